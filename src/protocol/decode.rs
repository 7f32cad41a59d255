//! Decoding a result's raw JSON text into the caller's type.
//!
//! serde_json checks every byte of a string eight at a time for quotes,
//! backslashes and control characters. A result that is one JSON string
//! without escapes (a long hex or base64 blob, text) decodes to exactly the
//! bytes between its quotes, so when a quick check finds no backslash and no
//! control character, the caller's type is handed those bytes as a borrowed
//! `str` by [`PlainString`], which answers exactly as serde_json's own
//! deserializer would for a string token and hands everything else to it.

use bytestring::ByteString;
use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

/// serde_json's marker for `RawValue`, which must see serde_json's own
/// deserializer (it captures the raw text).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// The raw JSON text of a result (a slice of the message it came in), and
/// whether the scan that found it knows it is a string without a backslash.
#[derive(Debug, Clone)]
pub struct RawResult {
    /// The JSON text.
    pub text: ByteString,
    /// A string without a backslash escape (`false`: unknown).
    pub unescaped: bool,
}

impl RawResult {
    /// Decodes the text into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        decode(&self.text, self.unescaped)
    }
}

/// Decodes `text` (one JSON value) into `T`. `unescaped`: `text` is known
/// to be a JSON string without a backslash (so that need not be checked).
pub fn decode<T: DeserializeOwned>(text: &str, unescaped: bool) -> Result<T, serde_json::Error> {
    match plain_string(text, unescaped) {
        Some(plain) => T::deserialize(PlainString { text, plain }),
        None => serde_json::from_str(text),
    }
}

/// The content of `text` when it is one JSON string with no escape, no
/// quote and no control character (which JSON forbids unescaped).
fn plain_string(text: &str, unescaped: bool) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let bytes = inner.as_bytes();
    if !unescaped && memchr::memchr2(b'\\', b'"', bytes).is_some() {
        return None;
    }
    // The smallest byte of each chunk: a fold that compiles to vector minimums.
    let control = bytes
        .chunks(256)
        .any(|chunk| chunk.iter().fold(u8::MAX, |low, &b| low.min(b)) < 0x20);
    (!control).then_some(inner)
}

/// A JSON string token whose content needs no unescaping.
struct PlainString<'a> {
    /// The whole token, quotes included, for what serde_json must handle.
    text: &'a str,
    /// Its content.
    plain: &'a str,
}

impl<'a> PlainString<'a> {
    /// serde_json's deserializer over the same token.
    fn json(self) -> serde_json::Deserializer<serde_json::de::StrRead<'a>> {
        serde_json::Deserializer::from_str(self.text)
    }
}

/// Hands the call on to serde_json's deserializer over the same text.
macro_rules! by_serde_json {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
                (&mut self.json()).$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for PlainString<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.plain)
    }

    // As serde_json does for a string token.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if name == RAW_VALUE_TOKEN {
            (&mut self.json()).deserialize_newtype_struct(name, visitor)
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    forward_to_deserialize_any! { str string identifier }

    by_serde_json! {
        deserialize_bool(), deserialize_i8(), deserialize_i16(), deserialize_i32(),
        deserialize_i64(), deserialize_i128(), deserialize_u8(), deserialize_u16(),
        deserialize_u32(), deserialize_u64(), deserialize_u128(), deserialize_f32(),
        deserialize_f64(), deserialize_char(), deserialize_bytes(), deserialize_byte_buf(),
        deserialize_unit(), deserialize_seq(), deserialize_map(), deserialize_ignored_any(),
        deserialize_unit_struct(name: &'static str),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_struct(name: &'static str, fields: &'static [&'static str]),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use serde_json::Value;
    use std::borrow::Cow;
    use std::collections::HashMap;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Hash(String);

    #[derive(Debug, PartialEq, Deserialize)]
    enum Colour {
        Red,
        #[serde(rename = "deep-blue")]
        Blue,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u64),
        Text(String),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Named {
        a: u8,
    }

    /// `decode` and `serde_json::from_str` agree on `text` for type `T`:
    /// the same value, or both an error.
    fn agree<T: DeserializeOwned + PartialEq + std::fmt::Debug>(text: &str) {
        let ours = decode::<T>(text, false);
        let theirs = serde_json::from_str::<T>(text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text} as {}", std::any::type_name::<T>()),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{text} as {}: ours {ours:?}, serde_json {theirs:?}",
                std::any::type_name::<T>()
            ),
        }
    }

    fn agree_on_all_types(text: &str) {
        agree::<String>(text);
        agree::<Box<str>>(text);
        agree::<Cow<'static, str>>(text);
        agree::<Value>(text);
        agree::<Option<String>>(text);
        agree::<Option<Option<String>>>(text);
        agree::<Hash>(text);
        agree::<Colour>(text);
        agree::<Either>(text);
        agree::<char>(text);
        agree::<u64>(text);
        agree::<f64>(text);
        agree::<bool>(text);
        agree::<()>(text);
        agree::<Vec<u8>>(text);
        agree::<Vec<String>>(text);
        agree::<HashMap<String, String>>(text);
        agree::<Named>(text);
        agree::<(String,)>(text);
        agree::<serde::de::IgnoredAny>(text);
    }

    #[test]
    fn plain_strings_decode_as_serde_json_would_for_every_kind_of_target() {
        for text in [
            r#""""#,
            r#""x""#,
            r#""Red""#,
            r#""deep-blue""#,
            r#""0xdeadbeef""#,
            r#""123""#,
            r#""é""#,
            r#""hello world""#,
        ] {
            assert!(plain_string(text, false).is_some(), "{text}");
            agree_on_all_types(text);
        }
    }

    #[test]
    fn anything_else_goes_to_serde_json() {
        for text in [
            r#""a\"b""#,
            r#""a\\b""#,
            "\"tab\there\"",
            "123",
            "null",
            "[\"a\"]",
            r#""open"#,
        ] {
            assert!(plain_string(text, false).is_none(), "{text:?}");
            agree_on_all_types(text);
        }
    }

    #[test]
    fn a_raw_value_still_gets_the_raw_text() {
        let raw: Box<RawValue> = decode(r#""abc""#, true).unwrap();
        assert_eq!(raw.get(), r#""abc""#);
    }

    #[test]
    fn a_long_blob_decodes_whole() {
        let blob = format!("\"0x{}\"", "ab".repeat(1 << 19));
        let back: String = decode(&blob, true).unwrap();
        assert_eq!(back.len(), (1 << 20) + 2);
    }

    proptest! {
        #[test]
        fn any_string_decodes_as_serde_json_would(s in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            let text = serde_json::to_string(&s).unwrap();
            agree::<String>(&text);
            agree::<Value>(&text);
            agree::<Option<String>>(&text);
            agree::<Hash>(&text);
            prop_assert_eq!(decode::<String>(&text, false).unwrap(), s);
        }
    }
}
