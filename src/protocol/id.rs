use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A request id, kept exactly as it appeared on the wire.
///
/// Our own calls use plain integers from a per-connection counter. A server
/// may use any number, string or `null` for the requests it sends us, and
/// the answer must carry the id back byte for byte: `1e2` stays `1e2`,
/// `12345678901234567890123` stays that long, `"\u00e9"` keeps its escape.
/// So an id is held as its JSON text, with a fast path for the integers
/// that make up nearly all traffic.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::Id;
///
/// let id: Id = serde_json::from_str("1e2").unwrap();
/// assert_eq!(id.to_string(), "1e2");
/// assert_eq!(id.as_u64(), None);
/// assert_eq!(Id::from(7).as_u64(), Some(7));
/// assert_eq!(Id::from("abc").to_string(), r#""abc""#);
/// assert_eq!(Id::from("abc").as_string().as_deref(), Some("abc"));
/// assert!(Id::null().is_null());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Id(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// A number written exactly as the decimal digits of a `u64`.
    Int(u64),
    /// `null`.
    Null,
    /// Any other number, or a string, as its exact JSON text.
    Text(Box<str>),
}

impl Id {
    /// The `null` id (a peer that could not read the id of a request answers with it).
    pub fn null() -> Id {
        Id(Repr::Null)
    }

    /// Reads an id from its JSON text: a number, a string or `null`, kept
    /// exactly. `None` for anything else (an object, an array, a boolean,
    /// or text that is not one JSON value).
    ///
    /// ```
    /// # use jsonrpc_websocket::Id;
    /// assert_eq!(Id::from_json("-0").unwrap().to_string(), "-0");
    /// assert!(Id::from_json("[1]").is_none());
    /// ```
    pub fn from_json(text: &str) -> Option<Id> {
        let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        match text.as_bytes().first()? {
            b'n' if text == "null" => Some(Id(Repr::Null)),
            b'"' | b'-' | b'0'..=b'9' => {
                // One JSON value of the right kind, nothing more.
                let raw = serde_json::from_str::<&RawValue>(text).ok()?;
                Some(Id::from_checked(raw.get()))
            }
            _ => None,
        }
    }

    /// `text` is known to be one JSON number or string.
    fn from_checked(text: &str) -> Id {
        match canonical_u64(text) {
            Some(n) => Id(Repr::Int(n)),
            None => Id(Repr::Text(text.into())),
        }
    }

    /// The id as an unsigned integer when it is written as one (the shape of
    /// our own ids). `1.0`, `1e0` and `"1"` are other ids.
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            Repr::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The value of a string id, unescaped.
    pub fn as_string(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            Repr::Text(text) if text.starts_with('"') => {
                serde_json::from_str::<Cow<'_, str>>(text).ok()
            }
            _ => None,
        }
    }

    /// Whether this is the `null` id.
    pub fn is_null(&self) -> bool {
        matches!(self.0, Repr::Null)
    }

    /// The id's exact JSON text.
    pub fn json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Int(n) => Cow::Owned(n.to_string()),
            Repr::Null => Cow::Borrowed("null"),
            Repr::Text(text) => Cow::Borrowed(text),
        }
    }

    /// Appends the exact JSON text to `out`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Int(n) => super::encode::push_u64(out, *n),
            Repr::Null => out.extend_from_slice(b"null"),
            Repr::Text(text) => out.extend_from_slice(text.as_bytes()),
        }
    }
}

/// `Some(n)` when `text` is exactly the shortest decimal form of `n`.
fn canonical_u64(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > 20 || (bytes[0] == b'0' && bytes.len() > 1) {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id(Repr::Int(n))
    }
}

/// A string id.
impl From<&str> for Id {
    fn from(s: &str) -> Self {
        let mut text = Vec::with_capacity(s.len() + 2);
        super::encode::push_json_string(&mut text, s);
        Id(Repr::Text(String::from_utf8_lossy(&text).into()))
    }
}

/// A string id.
impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::from(s.as_str())
    }
}

/// The exact JSON text: `7`, `"abc"`, `null`, `1e2`.
impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Int(n) => write!(f, "{n}"),
            Repr::Null => f.write_str("null"),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

/// Writes the exact JSON text (with `serde_json`; other serializers see a
/// number, a string or a unit for integers, strings and `null`).
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Int(n) => serializer.serialize_u64(*n),
            Repr::Null => serializer.serialize_unit(),
            Repr::Text(text) => match RawValue::from_string(text.to_string()) {
                Ok(raw) => raw.serialize(serializer),
                Err(err) => Err(serde::ser::Error::custom(err)),
            },
        }
    }
}

/// Reads a number, a string or `null`, kept exactly (with `serde_json`).
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Id::from_json(raw.get())
            .ok_or_else(|| serde::de::Error::custom("an id must be a number, a string or null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_exact_text() {
        let table = [
            ("7", "7", Some(7)),
            ("0", "0", Some(0)),
            (
                "18446744073709551615",
                "18446744073709551615",
                Some(u64::MAX),
            ),
            ("18446744073709551616", "18446744073709551616", None),
            ("12345678901234567890123", "12345678901234567890123", None),
            ("1e2", "1e2", None),
            ("-0", "-0", None),
            ("1.0", "1.0", None),
            ("-3", "-3", None),
            ("2.50", "2.50", None),
            (r#""abc""#, r#""abc""#, None),
            (r#""\u00e9""#, r#""\u00e9""#, None),
            ("null", "null", None),
            (" 5 ", "5", Some(5)),
        ];
        for (text, shown, int) in table {
            let id = Id::from_json(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(id.to_string(), shown, "{text}");
            assert_eq!(id.json(), shown, "{text}");
            assert_eq!(id.as_u64(), int, "{text}");
            let mut out = Vec::new();
            id.write_json(&mut out);
            assert_eq!(out, shown.as_bytes(), "{text}");
        }
    }

    #[test]
    fn other_values_are_not_ids() {
        for text in ["[1]", "{}", "true", "", "1 2", "01", r#""open"#, "nul"] {
            assert!(Id::from_json(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn serde_round_trips_exactly() {
        for text in [
            "1e2",
            "12345678901234567890123",
            r#""\u00e9x""#,
            "null",
            "42",
        ] {
            let id: Id = serde_json::from_str(text).unwrap();
            assert_eq!(serde_json::to_string(&id).unwrap(), text);
        }
        assert!(serde_json::from_str::<Id>("[1]").is_err());
    }

    #[test]
    fn string_ids_unescape_on_request() {
        let id = Id::from_json(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(id.as_string().as_deref(), Some("a\"bé"));
        assert_eq!(Id::from("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(Id::from(3).as_string(), None);
    }

    #[test]
    fn debug_shows_the_exact_text() {
        assert_eq!(format!("{:?}", Id::from(7u64)), "Id(7)");
        assert_eq!(format!("{:?}", Id::from("a")), r#"Id("a")"#);
        assert_eq!(format!("{:?}", Id::from_json("1e2").unwrap()), "Id(1e2)");
    }
}
