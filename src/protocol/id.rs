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
        // The shapes nearly every id has, recognised without a parser: the
        // decimal digits of a `u64`, and a string with nothing to unescape.
        if let Some(n) = canonical_u64(text) {
            return Some(Id(Repr::Int(n)));
        }
        if super::scan::plain_string(text).is_some() {
            return Some(Id(Repr::Text(text.into())));
        }
        Id::from_json_by_serde(text)
    }

    /// [`Id::from_json`] by serde_json alone (`text` trimmed): the reference
    /// the fast paths are tested against.
    fn from_json_by_serde(text: &str) -> Option<Id> {
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

/// A hasher for maps keyed by [`Id`] (a subscription's id, say): eight bytes
/// a step, one multiply each, where SipHash costs dozens of instructions for
/// the one integer most ids are. Not meant to resist chosen collisions: such
/// maps hold only ids the server gave to calls of ours, so their size is
/// ours to bound, whatever ids a server picks.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl IdHasher {
    // The multiplier of rustc's FxHasher (v2).
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The product's best bits are its high ones; hashbrown takes the
        // bucket from the low ones.
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            self.add(u64::from_le_bytes(eight));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut eight = [0; 8];
            eight[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(eight));
        }
        self.add(bytes.len() as u64);
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_isize(&mut self, n: isize) {
        self.add(n as u64);
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
    fn ids_as_map_keys_find_their_own_entries() {
        use std::collections::HashMap;
        use std::hash::BuildHasherDefault;
        let ids: Vec<Id> = (0..2_000u64)
            .map(Id::from)
            .chain((0..2_000).map(|n| Id::from(format!("0x{n:032x}"))))
            .chain(["1e2", "-0", "1.0", "null", r#""\u00e9""#].map(|t| Id::from_json(t).unwrap()))
            .collect();
        let mut map: HashMap<Id, usize, BuildHasherDefault<IdHasher>> = HashMap::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.insert(id.clone(), i), None, "{id}");
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id), Some(&i), "{id}");
        }
        assert_eq!(map.get(&Id::from_json("100").unwrap()), Some(&100));
        assert_eq!(map.get(&Id::from("100")), None, "a string is another id");
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

#[cfg(test)]
mod fast_paths_agree_with_serde {
    use super::*;
    use proptest::prelude::*;

    fn id_like_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<u128>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            // Leading zeros, signs, exponents, fractions, stray text.
            "[ \t]?[-+0]{0,2}[0-9]{0,22}([.eE][-+]?[0-9]{0,3})?[ x]?",
            // Strings: quotes, escapes, control characters, non-ASCII, DEL.
            r#""[a-z0-9"\\\u{0}-\u{1f}\u{7f}é ]{0,12}"?"#,
            any::<String>().prop_map(|s| format!("\"{s}\"")),
            any::<String>(),
            Just("null".to_owned()),
            Just(" null ".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn from_json_answers_as_serde_does(text in id_like_text()) {
            let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
            prop_assert_eq!(Id::from_json(&text), Id::from_json_by_serde(trimmed));
        }
    }
}
