//! Outbound JSON text, written straight into the buffer the frame is sent
//! from: the params were serialized when built, so no value is serialized
//! twice and no text is copied twice.

use super::{ErrorObject, Id};

/// Room for a request's text besides its method name and params: the
/// envelope is 45 bytes and the id at most 20 digits. A buffer with this
/// room is never regrown (a copy of the whole request) while it is written.
pub const REQUEST_ROOM: usize = 66;

/// `{"jsonrpc":"2.0","id":1,"method":"m","params":[..]}`; without `id` it is
/// a notification.
/// `params` is JSON text (see [`Params::wire`](super::Params)).
pub fn write_request(out: &mut Vec<u8>, id: Option<u64>, method: &str, params: Option<&[u8]>) {
    out.reserve(REQUEST_ROOM + method.len() + params.map_or(0, <[u8]>::len));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        push_u64(out, id);
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    push_json_string(out, method);
    if let Some(params) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params);
    }
    out.push(b'}');
}

/// `{"jsonrpc":"2.0","id":..,"result":..}` with `result` already JSON text.
pub fn write_result_response(out: &mut Vec<u8>, id: &Id, result: &str) {
    out.reserve(40 + result.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    id.write_json(out);
    out.extend_from_slice(br#","result":"#);
    out.extend_from_slice(result.as_bytes());
    out.push(b'}');
}

/// `{"jsonrpc":"2.0","id":..,"error":{..}}`.
pub fn write_error_response(out: &mut Vec<u8>, id: &Id, error: &ErrorObject) {
    out.reserve(64 + error.message.len());
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    id.write_json(out);
    out.extend_from_slice(br#","error":"#);
    if serde_json::to_writer(&mut *out, error).is_err() {
        // An ErrorObject holds only strings, numbers and raw JSON; kept total anyway.
        out.extend_from_slice(br#"{"code":-32603,"message":"internal error"}"#);
    }
    out.push(b'}');
}

/// [`write_request`] into a new `String`.
#[cfg(any(test, feature = "bench-internals"))]
pub fn encode_request(id: Option<u64>, method: &str, params: Option<&str>) -> String {
    text(|out| write_request(out, id, method, params.map(str::as_bytes)))
}

/// [`write_result_response`] into a new `String`.
#[cfg(any(test, feature = "bench-internals"))]
pub fn encode_result_response(id: &Id, result: &str) -> String {
    text(|out| write_result_response(out, id, result))
}

/// [`write_error_response`] into a new `String`.
#[cfg(test)]
pub fn encode_error_response(id: &Id, error: &ErrorObject) -> String {
    text(|out| write_error_response(out, id, error))
}

#[cfg(any(test, feature = "bench-internals"))]
fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut out);
    // Everything written above is UTF-8: ASCII, `&str`s and serde_json output.
    String::from_utf8(out)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

/// Decimal digits of `n`, without the formatting machinery (this runs once
/// per call).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Quotes `s` as a JSON string; the common case (no escapes needed) copies it
/// as is.
pub(crate) fn push_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Serializing a str to JSON cannot fail; kept total anyway.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Inbound, Message};
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn ids_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn a_request_fits_the_room_reserved_for_it() {
        for (id, method, params) in [
            (Some(u64::MAX), "m", Some("[1]")),
            (Some(0), "a.much.longer.method.name", None),
            (None, "note", Some(r#"{"a":[]}"#)),
        ] {
            let room = REQUEST_ROOM + method.len() + params.map_or(0, str::len);
            let mut out = Vec::with_capacity(room);
            write_request(&mut out, id, method, params.map(str::as_bytes));
            assert_eq!(out.capacity(), room, "{method}: regrown");
            // Back to back, as in a batch: no regrowth either.
            let mut batch = Vec::with_capacity(3 * room);
            for _ in 0..3 {
                write_request(&mut batch, id, method, params.map(str::as_bytes));
                batch.push(b',');
            }
            assert_eq!(batch.capacity(), 3 * room, "{method}: batch regrown");
        }
    }

    #[test]
    fn requests_and_notifications_have_the_exact_shape() {
        assert_eq!(
            encode_request(Some(7), "foo.bar", Some("[1,2]")),
            r#"{"jsonrpc":"2.0","id":7,"method":"foo.bar","params":[1,2]}"#
        );
        assert_eq!(
            encode_request(None, "n", None),
            r#"{"jsonrpc":"2.0","method":"n"}"#
        );
        assert_eq!(
            encode_request(Some(1), "we\"ird\n", None),
            r#"{"jsonrpc":"2.0","id":1,"method":"we\"ird\n"}"#
        );
    }

    #[test]
    fn responses_echo_the_id_exactly() {
        let error = ErrorObject::method_not_found("x");
        for (id, text) in [
            (Id::from(3), "3"),
            (Id::from("a\"b"), r#""a\"b""#),
            (Id::null(), "null"),
            (serde_json::from_str::<Id>("-2").unwrap(), "-2"),
            (serde_json::from_str::<Id>("1e2").unwrap(), "1e2"),
        ] {
            assert_eq!(
                encode_result_response(&id, "true"),
                format!(r#"{{"jsonrpc":"2.0","id":{text},"result":true}}"#)
            );
            assert_eq!(
                encode_error_response(&id, &error),
                format!(
                    r#"{{"jsonrpc":"2.0","id":{text},"error":{{"code":-32601,"message":"method not found: x"}}}}"#
                )
            );
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".*".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn request_round_trips(id in any::<u64>(), method in ".*", args in prop::collection::vec(json_value(), 0..4)) {
            let params = serde_json::to_string(&args).unwrap();
            let text = encode_request(Some(id), &method, Some(&params));
            let Inbound::Single(Message::Request(req)) = parse(&text) else {
                panic!("not a request: {text}");
            };
            prop_assert_eq!(req.id, Id::from(id));
            prop_assert_eq!(req.method, method);
            let back: Value = serde_json::from_str(req.params.unwrap()).unwrap();
            prop_assert_eq!(back, Value::Array(args));
        }

        #[test]
        fn result_response_round_trips(id in any::<u64>(), key in ".*", result in json_value()) {
            let ids = [Id::from(id), Id::from(key), Id::null()];
            for id in ids {
                let text = encode_result_response(&id, &result.to_string());
                let Inbound::Single(Message::Response(resp)) = parse(&text) else {
                    panic!("not a response: {text}");
                };
                prop_assert_eq!(&resp.id, &id);
                let back: Value = serde_json::from_str(resp.outcome.unwrap()).unwrap();
                prop_assert_eq!(&back, &result);
            }
        }

        #[test]
        fn error_response_round_trips(code in any::<i64>(), message in ".*", data in json_value()) {
            let error = ErrorObject::new(code, message).with_data(&data);
            let text = encode_error_response(&Id::from(1), &error);
            let Inbound::Single(Message::Response(resp)) = parse(&text) else {
                panic!("not a response: {text}");
            };
            prop_assert_eq!(resp.outcome.unwrap_err(), error);
        }

        #[test]
        fn parse_never_panics(text in ".*") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_json(value in json_value(), cut in any::<prop::sample::Index>()) {
            let text = json!({"jsonrpc": "2.0", "id": 1, "result": value}).to_string();
            let end = cut.index(text.len() + 1);
            if text.is_char_boundary(end) {
                let _ = parse(&text[..end]);
            }
        }
    }

    #[test]
    fn notification_parses_back() {
        let text = encode_request(None, "tick", Some(r#"{"n":1}"#));
        assert!(
            matches!(parse(&text), Inbound::Single(Message::Notification(n)) if n.method == "tick")
        );
    }
}
