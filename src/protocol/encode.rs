//! Outbound JSON text, written straight into one `String` per message: the
//! params were serialized when built, so no value is serialized twice.

use std::fmt::Write as _;

use super::{ErrorObject, Id};

/// `{"jsonrpc":"2.0","id":1,"method":"m","params":[..]}`; without `id` it is
/// a notification.
pub fn encode_request(id: Option<u64>, method: &str, params: Option<&str>) -> String {
    let mut out = String::with_capacity(48 + method.len() + params.map_or(0, str::len));
    out.push_str(r#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.push_str(r#""id":"#);
        push_u64(&mut out, id);
        out.push(',');
    }
    out.push_str(r#""method":"#);
    push_json_string(&mut out, method);
    if let Some(params) = params {
        out.push_str(r#","params":"#);
        out.push_str(params);
    }
    out.push('}');
    out
}

/// `{"jsonrpc":"2.0","id":..,"result":..}` with `result` already JSON text.
pub fn encode_result_response(id: &Id, result: &str) -> String {
    let mut out = String::with_capacity(40 + result.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_id(&mut out, id);
    out.push_str(r#","result":"#);
    out.push_str(result);
    out.push('}');
    out
}

/// `{"jsonrpc":"2.0","id":..,"error":{..}}`.
pub fn encode_error_response(id: &Id, error: &ErrorObject) -> String {
    let mut out = String::with_capacity(64 + error.message.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_id(&mut out, id);
    out.push_str(r#","error":"#);
    match serde_json::to_string(error) {
        Ok(text) => out.push_str(&text),
        // An ErrorObject holds only strings, numbers and raw JSON; kept total anyway.
        Err(_) => out.push_str(r#"{"code":-32603,"message":"internal error"}"#),
    }
    out.push('}');
    out
}

/// Decimal digits of `n`, without the formatting machinery (this runs once
/// per call).
fn push_u64(out: &mut String, mut n: u64) {
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
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

fn push_id(out: &mut String, id: &Id) {
    match id {
        Id::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Id::String(s) => push_json_string(out, s),
        Id::Null => out.push_str("null"),
    }
}

/// Quotes `s` as a JSON string; the common case (no escapes needed) copies it
/// as is.
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Serializing a str to JSON cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
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
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
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
            (Id::Null, "null"),
            (serde_json::from_str::<Id>("-2").unwrap(), "-2"),
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
            let back: Value = serde_json::from_str(req.params.unwrap().get()).unwrap();
            prop_assert_eq!(back, Value::Array(args));
        }

        #[test]
        fn result_response_round_trips(id in any::<u64>(), key in ".*", result in json_value()) {
            let ids = [Id::from(id), Id::String(key), Id::Null];
            for id in ids {
                let text = encode_result_response(&id, &result.to_string());
                let Inbound::Single(Message::Response(resp)) = parse(&text) else {
                    panic!("not a response: {text}");
                };
                prop_assert_eq!(&resp.id, &id);
                let back: Value = serde_json::from_str(resp.outcome.unwrap().get()).unwrap();
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
