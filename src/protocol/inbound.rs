//! Classification of one inbound text message. A structural scan
//! ([`super::scan`]) finds the envelope's members, borrowing each; when it
//! cannot, one `serde_json` pass does. Only the members we keep are copied.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::scan::{self, Fields, SubscriptionParams};
use super::{ErrorObject, Id};

/// One inbound websocket message, classified. Borrows from the message's
/// text: results and params stay raw JSON until someone asks for a type.
#[derive(Debug)]
pub enum Inbound<'a> {
    /// A single JSON object.
    Single(Message<'a>),
    /// A JSON array: a batch of messages (responses to our batch, or requests
    /// from the server).
    Batch(Vec<Message<'a>>),
    /// Not JSON-RPC at all: invalid JSON, a scalar, or an empty array. The
    /// string says why.
    Garbage(String),
}

/// One JSON-RPC object from the peer.
#[derive(Debug)]
pub enum Message<'a> {
    /// The answer to one of our calls.
    Response(Response<'a>),
    /// A request from the server that expects an answer.
    Request(Request<'a>),
    /// A notification from the server; never answered.
    Notification(Notification<'a>),
    /// Has a `method` but is not a valid request. Answered with -32600 when
    /// an id could be read.
    InvalidRequest {
        /// The id, if one could be read.
        id: Option<Id>,
        /// What is wrong with it.
        reason: String,
    },
    /// Looks like a response but is not a valid one (both `result` and
    /// `error`, wrong version, no id…). If the id names a pending call, that
    /// call fails with this reason.
    InvalidResponse {
        /// The id, if one could be read.
        id: Option<Id>,
        /// What is wrong with it.
        reason: String,
    },
}

/// A response: the id of the call it answers and its outcome. That a
/// response has exactly one of `result` and `error` is expressed by the type.
#[derive(Debug)]
pub struct Response<'a> {
    /// The id of the call this answers.
    pub id: Id,
    /// The raw `result` JSON text, or the `error` object. The text is
    /// located, not validated: decoding it validates.
    pub outcome: Result<&'a str, ErrorObject>,
    /// The result is a JSON string without a backslash escape (known from
    /// the scan; `false` when unknown).
    pub unescaped: bool,
}

/// A request sent to us by the server.
#[derive(Debug)]
pub struct Request<'a> {
    /// Its id, echoed exactly in our answer.
    pub id: Id,
    /// The full method name (borrowed from the message's text unless it
    /// had to be unescaped).
    pub method: Cow<'a, str>,
    /// The raw `params` (an array or an object), if any.
    pub params: Option<&'a str>,
}

/// A notification sent to us by the server.
#[derive(Debug)]
pub struct Notification<'a> {
    /// The full method name (borrowed from the message's text unless it
    /// had to be unescaped).
    pub method: Cow<'a, str>,
    /// The raw `params` (an array or an object), if any.
    pub params: Option<&'a str>,
    /// The subscription members of `params`, when the scan read them with
    /// the envelope (`None`: not read; routing scans `params` itself).
    pub(crate) params_members: Option<SubscriptionParams<'a>>,
}

/// Every member borrowed and optional, so that a wrongly typed member still
/// lets us read the others (above all the id). `Some` means "present", even
/// when the value is `null`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

impl<'a> Envelope<'a> {
    fn fields(&self) -> Fields<'a> {
        Fields {
            jsonrpc: self.jsonrpc.map(RawValue::get),
            id: self.id.map(RawValue::get),
            method: self.method.map(RawValue::get),
            params: self.params.map(RawValue::get),
            result: self.result.map(RawValue::get),
            error: self.error.map(RawValue::get),
            result_unescaped: false,
            params_members: None,
        }
    }
}

/// Classifies one inbound text message. Never fails: what cannot be read is
/// [`Inbound::Garbage`] or an invalid [`Message`].
pub fn parse(text: &str) -> Inbound<'_> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => match scan::object(text) {
            Some(fields) => Inbound::Single(classify(fields)),
            None => match serde_json::from_str::<Envelope<'_>>(text) {
                Ok(envelope) => Inbound::Single(classify(envelope.fields())),
                Err(err) => Inbound::Garbage(format!("invalid JSON: {err}")),
            },
        },
        Some(b'[') => {
            let messages = scan::array(text, |item, fields| match fields {
                Some(fields) => classify(fields),
                None => classify_item(item),
            });
            let messages = match messages {
                Some(messages) => messages,
                None => match serde_json::from_str::<Vec<&RawValue>>(text) {
                    Ok(items) => items
                        .into_iter()
                        .map(RawValue::get)
                        .map(classify_item)
                        .collect(),
                    Err(err) => return Inbound::Garbage(format!("invalid JSON: {err}")),
                },
            };
            if messages.is_empty() {
                Inbound::Garbage("empty batch".into())
            } else {
                Inbound::Batch(messages)
            }
        }
        Some(_) => Inbound::Garbage("not a JSON object or array".into()),
        None => Inbound::Garbage("empty message".into()),
    }
}

fn classify_item(item: &str) -> Message<'_> {
    if let Some(fields) = scan::object(item) {
        return classify(fields);
    }
    match serde_json::from_str::<Envelope<'_>>(item) {
        Ok(envelope) => classify(envelope.fields()),
        Err(err) => Message::InvalidRequest {
            id: None,
            reason: format!("batch element is not a JSON-RPC object: {err}"),
        },
    }
}

fn classify(env: Fields<'_>) -> Message<'_> {
    let version_ok = env.jsonrpc == Some("\"2.0\"");
    let id = match env.id.map(Id::from_json) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            let reason = "id must be a number, a string or null".to_owned();
            return match env.method {
                Some(_) => Message::InvalidRequest { id: None, reason },
                None => Message::InvalidResponse { id: None, reason },
            };
        }
    };
    // `"error": null` beside a result is JSON-RPC 1.0 style; tolerate it.
    let error = env.error.filter(|e| *e != "null");

    if let Some(method) = env.method {
        let invalid = |reason: &str| Message::InvalidRequest {
            id: id.clone(),
            reason: reason.to_owned(),
        };
        let method = match scan::plain_string(method) {
            Some(plain) => Cow::Borrowed(plain),
            None => match serde_json::from_str::<String>(method) {
                Ok(method) => Cow::Owned(method),
                Err(_) => return invalid("method must be a string"),
            },
        };
        if !version_ok {
            return invalid("jsonrpc must be \"2.0\"");
        }
        if env.result.is_some() || error.is_some() {
            return invalid("a request cannot carry result or error");
        }
        let params = env.params;
        if let Some(p) = &params {
            if !matches!(p.as_bytes().first(), Some(b'[' | b'{')) {
                return invalid("params must be an array or an object");
            }
        }
        return match id {
            Some(id) => Message::Request(Request { id, method, params }),
            None => Message::Notification(Notification {
                method,
                params,
                params_members: env.params_members,
            }),
        };
    }

    let invalid = |reason: &str| Message::InvalidResponse {
        id: id.clone(),
        reason: reason.to_owned(),
    };
    let outcome = match (env.result, error) {
        (Some(_), Some(_)) => return invalid("response has both result and error"),
        (None, None) => return invalid("message has neither method, result nor error"),
        (Some(result), None) => Ok(result),
        (None, Some(error)) => match serde_json::from_str::<ErrorObject>(error) {
            Ok(error) => Err(error),
            Err(err) => {
                return invalid(&format!("error member is not a valid error object: {err}"))
            }
        },
    };
    if !version_ok {
        return invalid("jsonrpc must be \"2.0\"");
    }
    match id {
        Some(id) => Message::Response(Response {
            id,
            outcome,
            unescaped: env.result_unescaped,
        }),
        None => invalid("response has no id"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-line summary of a classification, so tables stay readable.
    fn summary(text: &str) -> String {
        match parse(text) {
            Inbound::Single(m) => one(&m),
            Inbound::Batch(ms) => {
                let parts: Vec<String> = ms.iter().map(one).collect();
                format!("batch[{}]", parts.join(", "))
            }
            Inbound::Garbage(reason) => format!("garbage: {reason}"),
        }
    }

    fn one(m: &Message) -> String {
        match m {
            Message::Response(Response {
                id, outcome: Ok(r), ..
            }) => format!("ok {id} {r}"),
            Message::Response(Response {
                id,
                outcome: Err(e),
                ..
            }) => format!("err {id} {e}"),
            Message::Request(r) => {
                format!("request {} {} {}", r.id, r.method, r.params.unwrap_or("-"))
            }
            Message::Notification(n) => {
                format!("notification {} {}", n.method, n.params.unwrap_or("-"))
            }
            Message::InvalidRequest { id, reason } => {
                format!("invalid request {}: {reason}", show(id))
            }
            Message::InvalidResponse { id, reason } => {
                format!("invalid response {}: {reason}", show(id))
            }
        }
    }

    fn show(id: &Option<Id>) -> String {
        id.as_ref().map_or("-".into(), Id::to_string)
    }

    #[test]
    fn valid_messages_are_classified() {
        let table = [
            (r#"{"jsonrpc":"2.0","id":1,"result":5}"#, "ok 1 5"),
            (r#"{"jsonrpc":"2.0","id":1,"result":null}"#, "ok 1 null"),
            (
                r#"{"id":2,"result":{"a":[1]},"jsonrpc":"2.0"}"#,
                r#"ok 2 {"a":[1]}"#,
            ),
            (
                r#"  {"jsonrpc":"2.0","id":"x","result":"s"}"#,
                r#"ok "x" "s""#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"boom","data":{"d":1}}}"#,
                r#"err 3 error -32000: boom (data: {"d":1})"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
                "err null error -32700: Parse error",
            ),
            (
                r#"{"jsonrpc":"2.0","id":4,"result":1,"error":null}"#,
                "ok 4 1",
            ),
            (
                r#"{"jsonrpc":"2.0","id":9,"method":"a.b","params":[1,2]}"#,
                "request 9 a.b [1,2]",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"k","method":"a","params":{"x":1}}"#,
                r#"request "k" a {"x":1}"#,
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"a"}"#,
                "request null a -",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tick","params":[1]}"#,
                "notification tick [1]",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tick"}"#,
                "notification tick -",
            ),
            (
                r#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","method":"n"}]"#,
                "batch[ok 1 1, notification n -]",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":"\u00e9\n"}"#,
                r#"ok 1 "\u00e9\n""#,
            ),
        ];
        for (text, expected) in table {
            assert_eq!(summary(text), expected, "{text}");
        }
    }

    #[test]
    fn invalid_messages_keep_their_id_and_say_why() {
        let table = [
            (r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}}"#,
             "invalid response 1: response has both result and error"),
            (r#"{"jsonrpc":"1.0","id":1,"result":1}"#,
             "invalid response 1: jsonrpc must be \"2.0\""),
            (r#"{"id":1,"result":1}"#, "invalid response 1: jsonrpc must be \"2.0\""),
            (r#"{"jsonrpc":"2.0","result":1}"#, "invalid response -: response has no id"),
            (r#"{"jsonrpc":"2.0","id":1}"#,
             "invalid response 1: message has neither method, result nor error"),
            (r#"{"jsonrpc":"2.0","id":[1],"result":1}"#,
             "invalid response -: id must be a number, a string or null"),
            (r#"{"jsonrpc":"2.0","id":1,"error":"bad"}"#,
             "invalid response 1: error member is not a valid error object: invalid type: string \"bad\", expected struct ErrorObject at line 1 column 5"),
            (r#"{"jsonrpc":"2.0","id":5,"method":7}"#,
             "invalid request 5: method must be a string"),
            (r#"{"jsonrpc":"2.0","id":5,"method":"m","params":3}"#,
             "invalid request 5: params must be an array or an object"),
            (r#"{"id":5,"method":"m"}"#, "invalid request 5: jsonrpc must be \"2.0\""),
            (r#"{"jsonrpc":"2.0","id":5,"method":"m","result":1}"#,
             "invalid request 5: a request cannot carry result or error"),
            (r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#,
             "invalid request -: id must be a number, a string or null"),
        ];
        for (text, expected) in table {
            assert_eq!(summary(text), expected, "{text}");
        }
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let table = [
            ("", "garbage: empty message"),
            ("   ", "garbage: empty message"),
            ("hello", "garbage: not a JSON object or array"),
            ("42", "garbage: not a JSON object or array"),
            ("[]", "garbage: empty batch"),
            (
                "{not json",
                "garbage: invalid JSON: key must be a string at line 1 column 2",
            ),
            (
                r#"{"id":1,"id":2}"#,
                "garbage: invalid JSON: duplicate field `id` at line 1 column 12",
            ),
            (
                "[1",
                "garbage: invalid JSON: EOF while parsing a list at line 1 column 2",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1} x"#,
                "garbage: invalid JSON: trailing characters at line 1 column 37",
            ),
        ];
        for (text, expected) in table {
            assert_eq!(summary(text), expected, "{text:?}");
        }
        assert_eq!(
            summary("[1, {\"jsonrpc\":\"2.0\",\"method\":\"n\"}]"),
            "batch[invalid request -: batch element is not a JSON-RPC object: invalid type: integer `1`, expected struct Envelope at line 1 column 1, notification n -]"
        );
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    #[test]
    fn deep_nesting_neither_overflows_the_stack_nor_hides_the_id() {
        for depth in [100, 200, 100_000] {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{nested}}}"#);
            // The envelope skips over the result without recursing, so the
            // call still gets this answer...
            let Inbound::Single(Message::Response(response)) = parse(&text) else {
                panic!("depth {depth}: not classified as a response");
            };
            // ...and decoding it is where serde_json's depth limit (128) speaks.
            let decoded = serde_json::from_str::<serde_json::Value>(response.outcome.unwrap());
            assert_eq!(decoded.is_ok(), depth <= 128, "depth {depth}");
            let batch = format!("[{text}]");
            assert!(matches!(parse(&batch), Inbound::Batch(_)), "depth {depth}");
        }
    }
}

#[cfg(test)]
mod scan_agrees_with_serde {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            // Quotes, backslashes, brackets and control characters inside strings.
            r#"[a-z"\\\[\]{}:, \n\t\u{0}-\u{1f}é]*"#.prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                // Some keys are a subscription notification's params members.
                prop::collection::btree_map(object_key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn object_key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => r#"[a-z"\\]{0,6}"#,
            1 => prop::sample::select(vec!["subscription", "result", "error"]).prop_map(str::to_owned),
        ]
    }

    fn envelope() -> impl Strategy<Value = Value> {
        let keys = prop::sample::subsequence(
            vec![
                "jsonrpc", "id", "method", "params", "result", "error", "other", "x\"y",
            ],
            0..8,
        );
        (keys, prop::collection::vec(json_value(), 8)).prop_map(|(keys, values)| {
            let map: Map<String, Value> = keys
                .into_iter()
                .zip(values)
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            Value::Object(map)
        })
    }

    proptest! {
        #[test]
        fn the_fast_scan_finds_what_serde_finds(value in envelope(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let by_serde = serde_json::from_str::<Envelope<'_>>(&text).unwrap().fields();
            // The scan may give up (escaped keys), never disagree.
            if let Some(by_scan) = scan::object(&text) {
                // The scan may know more (whether the result has escapes,
                // and the params' subscription members, which must be what
                // scanning the params alone finds).
                prop_assert_eq!(
                    Fields { result_unescaped: false, params_members: None, ..by_scan },
                    by_serde
                );
                prop_assert_eq!(
                    by_scan.params_members,
                    by_scan.params.and_then(scan::subscription_params)
                );
                if by_scan.result_unescaped {
                    prop_assert!(by_scan.result.is_some_and(|r| r.starts_with('"') && !r.contains('\\')));
                }
            }
            let batch = format!("[{text},{text}]");
            if let Some(items) = scan::array(&batch, |item, fields| (item, fields)) {
                let scanned = scan::object(&text);
                prop_assert_eq!(items, vec![(text.as_str(), scanned), (text.as_str(), scanned)]);
            }
        }

        #[test]
        fn the_fast_scan_never_panics(text in ".*") {
            let _ = scan::object(&text);
            let _ = scan::array(&text, |item, fields| (item, fields));
        }

        #[test]
        fn the_fast_scan_never_panics_on_cut_json(value in envelope(), cut in any::<prop::sample::Index>()) {
            let text = value.to_string();
            let end = cut.index(text.len() + 1);
            if text.is_char_boundary(end) {
                let _ = parse(&text[..end]);
                let _ = scan::array(&text[..end], |item, fields| (item, fields));
            }
        }
    }
}
