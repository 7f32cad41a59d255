use std::cell::Cell;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The `params` of a request or notification, serialized once when built.
///
/// JSON-RPC 2.0 allows three shapes, and each has a constructor:
///
/// | shape | on the wire | build it with |
/// |---|---|---|
/// | none | `params` omitted | [`Params::none`], `params![]` |
/// | positional | `"params": [1, 2]` | `params![1, 2]`, [`Params::positional`] |
/// | named | `"params": {"a": 1}` | [`Params::named`], `json!({"a": 1})` |
///
/// A single object passed *positionally* (Python's `server.foo({'foo': 'bar'})`)
/// is `params![json!({"foo": "bar"})]`, which sends `[{"foo":"bar"}]`.
///
/// A value that cannot be serialized, or that has the wrong shape, is kept as
/// an error and reported by the call that uses it, so building params never
/// panics and never needs `?`.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::{params, Params};
/// use serde_json::json;
///
/// assert_eq!(params![1, "two"].to_json(), Some("[1,\"two\"]"));
/// assert_eq!(Params::from(json!({"bar": 1})).to_json(), Some(r#"{"bar":1}"#));
/// assert_eq!(params![json!({"foo": "bar"})].to_json(), Some(r#"[{"foo":"bar"}]"#));
/// assert_eq!(Params::none().to_json(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Params(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    None,
    /// JSON text of an array or an object (checked when built), of up to
    /// [`INLINE`] bytes: kept in place, no allocation (`[1]`, `["abc",42]`).
    Short(Short),
    /// Longer JSON text of an array or an object (checked when built).
    Json(Box<str>),
    /// Why the params could not be built; reported by the call.
    Invalid(Box<str>),
}

/// The longest params kept in place: as long as they fit beside their
/// length in the room a boxed text takes, so `Params` is no larger.
const INLINE: usize = 22;

/// Up to [`INLINE`] bytes of UTF-8 text; the bytes past `len` are zero, so
/// equal texts are equal values.
#[derive(Clone, PartialEq, Eq)]
struct Short {
    len: u8,
    bytes: [u8; INLINE],
}

impl Short {
    /// The text's bytes, unchecked: what the encoder copies into a frame.
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Always a whole `str` copied in (see `Repr::json`): the check
        // cannot fail, and costs a few ns for 22 bytes at most.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Repr {
    /// JSON text already checked to be an array or an object: in place when
    /// short, else boxed. Every constructor goes through here, so one text
    /// always has one representation.
    fn json(text: &str) -> Repr {
        if text.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Repr::Short(Short {
                len: text.len() as u8,
                bytes,
            })
        } else {
            Repr::Json(text.into())
        }
    }

    /// [`Repr::json`] for an owned text (kept without a copy when long).
    fn json_string(text: String) -> Repr {
        if text.len() <= INLINE {
            Repr::json(&text)
        } else {
            Repr::Json(text.into_boxed_str())
        }
    }
}

impl Params {
    /// No params: the `params` member is left out.
    pub fn none() -> Self {
        Params(Repr::None)
    }

    /// Positional params from anything that serializes to a JSON array:
    /// a `Vec`, a slice, a tuple.
    ///
    /// ```
    /// # use jsonrpc_websocket::Params;
    /// assert_eq!(Params::positional(&(1, "a")).to_json(), Some(r#"[1,"a"]"#));
    /// assert!(Params::positional(&5).is_invalid());
    /// ```
    pub fn positional<T: Serialize + ?Sized>(args: &T) -> Self {
        Self::shaped(
            args,
            b'[',
            "positional params must serialize to a JSON array",
        )
    }

    /// Named params from anything that serializes to a JSON object: a struct,
    /// a map.
    ///
    /// ```
    /// # use jsonrpc_websocket::Params;
    /// #[derive(serde::Serialize)]
    /// struct Login<'a> { user: &'a str }
    /// assert_eq!(Params::named(&Login { user: "ann" }).to_json(), Some(r#"{"user":"ann"}"#));
    /// ```
    pub fn named<T: Serialize + ?Sized>(args: &T) -> Self {
        Self::shaped(args, b'{', "named params must serialize to a JSON object")
    }

    /// Params given as JSON text, sent exactly as written: numbers keep
    /// their digits (`12345678901234567890123` is not rounded to a float)
    /// and objects their key order. The text must be one JSON array or
    /// object; anything else is kept as an error for the call to report.
    ///
    /// ```
    /// # use jsonrpc_websocket::Params;
    /// let p = Params::from_json(r#"[12345678901234567890123, {"b": 1, "a": 2}]"#);
    /// assert_eq!(p.to_json(), Some(r#"[12345678901234567890123, {"b": 1, "a": 2}]"#));
    /// assert!(Params::from_json("5").is_invalid());
    /// assert!(Params::from_json("[1,").is_invalid());
    /// ```
    pub fn from_json(text: impl Into<String>) -> Self {
        let text = text.into();
        let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
        if let Err(err) = serde_json::from_str::<&serde_json::value::RawValue>(trimmed) {
            return Params::invalid(format!("params are not valid JSON: {err}"));
        }
        match trimmed.as_bytes().first() {
            Some(b'[' | b'{') if trimmed.len() == text.len() => Params(Repr::json_string(text)),
            Some(b'[' | b'{') => Params(Repr::json(trimmed)),
            _ => Params::invalid(format!(
                "params must be a JSON array or object, got `{}`",
                preview(trimmed)
            )),
        }
    }

    fn shaped<T: Serialize + ?Sized>(args: &T, open: u8, wrong_shape: &str) -> Self {
        // Serialized into a buffer kept for the next params, then copied
        // in place when short, else into an allocation of the exact size:
        // none or one allocation, where `to_string` makes a 128-byte one and
        // then shrinks it.
        let mut buf = SCRATCH.with(Cell::take);
        buf.clear();
        let params = match serde_json::to_writer(&mut buf, args) {
            Ok(()) => match std::str::from_utf8(&buf) {
                Ok(text) if text.as_bytes().first() == Some(&open) => Params(Repr::json(text)),
                Ok(text) => Params::invalid(format!("{wrong_shape}, got `{}`", preview(text))),
                // serde_json only writes UTF-8; this arm exists so that no panic is possible.
                Err(err) => Params::invalid(format!("params are not UTF-8: {err}")),
            },
            Err(err) => Params::invalid(format!("params could not be serialized: {err}")),
        };
        if buf.capacity() <= SCRATCH_KEPT {
            SCRATCH.with(|scratch| scratch.set(buf));
        }
        params
    }

    fn invalid(reason: String) -> Self {
        Params(Repr::Invalid(reason.into_boxed_str()))
    }

    /// The JSON text sent as `params`, or `None` when they are left out or
    /// invalid.
    pub fn to_json(&self) -> Option<&str> {
        match &self.0 {
            Repr::Short(text) => Some(text.as_str()),
            Repr::Json(text) => Some(text),
            Repr::None | Repr::Invalid(_) => None,
        }
    }

    /// Whether building these params failed (the call using them will fail
    /// with [`Error::InvalidParams`](crate::Error::InvalidParams)).
    pub fn is_invalid(&self) -> bool {
        matches!(self.0, Repr::Invalid(_))
    }

    /// The params to send as JSON bytes (`None` when left out), or why they
    /// cannot be sent. Bytes, not `&str`: the encoder copies them into a
    /// frame, and a short text would otherwise be checked for UTF-8 again
    /// on every send.
    pub(crate) fn wire(&self) -> Result<Option<&[u8]>, &str> {
        match &self.0 {
            Repr::None => Ok(None),
            Repr::Short(text) => Ok(Some(text.as_bytes())),
            Repr::Json(text) => Ok(Some(text.as_bytes())),
            Repr::Invalid(reason) => Err(reason),
        }
    }

    /// How long [`wire`](Self::wire)'s text is (0 when there is none).
    pub(crate) fn wire_len(&self) -> usize {
        self.wire().ok().flatten().map_or(0, <[u8]>::len)
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::none()
    }
}

/// `null` means no params, an array is positional, an object is named. Any
/// other value is sent as a single positional argument (`5` becomes `[5]`),
/// as the Python library does with `server.foo(5)`.
impl From<Value> for Params {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Params::none(),
            Value::Array(_) | Value::Object(_) => Params(Repr::json_string(value.to_string())),
            scalar => Params::positional(&[scalar]),
        }
    }
}

/// Raw JSON is sent exactly as it is (see [`Params::from_json`]).
impl From<Box<serde_json::value::RawValue>> for Params {
    fn from(raw: Box<serde_json::value::RawValue>) -> Self {
        Params::from_json(String::from(Box::<str>::from(raw)))
    }
}

impl From<Vec<Value>> for Params {
    fn from(args: Vec<Value>) -> Self {
        Params::positional(&args)
    }
}

impl From<serde_json::Map<String, Value>> for Params {
    fn from(args: serde_json::Map<String, Value>) -> Self {
        Params::named(&args)
    }
}

impl From<()> for Params {
    fn from(_: ()) -> Self {
        Params::none()
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::None => f.write_str("Params::none()"),
            Repr::Short(text) => write!(f, "Params({})", text.as_str()),
            Repr::Json(text) => write!(f, "Params({})", preview(text)),
            Repr::Invalid(reason) => write!(f, "Params::invalid({reason:?})"),
        }
    }
}

/// Builds positional params one argument at a time, for argument lists whose
/// length is only known at run time. ([`params!`](crate::params) is shorter
/// when the arguments are written out.)
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::ParamsBuilder;
///
/// let mut args = ParamsBuilder::new();
/// for n in 1..=3 {
///     args.push(&n);
/// }
/// assert_eq!(args.finish().to_json(), Some("[1,2,3]"));
/// ```
#[derive(Debug, Default)]
pub struct ParamsBuilder {
    text: Vec<u8>,
    error: Option<String>,
}

impl ParamsBuilder {
    /// An empty argument list.
    pub fn new() -> Self {
        ParamsBuilder::default()
    }

    /// Appends one argument. A serialization failure is kept and reported by
    /// the call that uses the params.
    pub fn push<T: Serialize + ?Sized>(&mut self, arg: &T) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        self.text
            .push(if self.text.is_empty() { b'[' } else { b',' });
        if let Err(err) = serde_json::to_writer(&mut self.text, arg) {
            self.error = Some(format!(
                "argument {} could not be serialized: {err}",
                self.len()
            ));
        }
        self
    }

    fn len(&self) -> usize {
        // Commas separate arguments; counting them is only used for messages.
        self.text.iter().filter(|&&b| b == b',').count()
    }

    /// The finished positional params (`[]` if nothing was pushed).
    pub fn finish(mut self) -> Params {
        if let Some(err) = self.error {
            return Params::invalid(err);
        }
        if self.text.is_empty() {
            self.text.push(b'[');
        }
        self.text.push(b']');
        match String::from_utf8(self.text) {
            Ok(text) => Params(Repr::json_string(text)),
            // serde_json only writes UTF-8; this arm exists so that no panic is possible.
            Err(err) => Params::invalid(format!("params are not UTF-8: {err}")),
        }
    }
}

/// Builds positional [`Params`] from a list of serializable expressions.
///
/// `params![]` leaves `params` out of the request; `params![a, b]` sends
/// `[a, b]`. Up to 16 arguments (serde's tuple limit); for longer or dynamic
/// lists use [`ParamsBuilder`].
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::params;
/// use serde_json::json;
///
/// let p = params![1, "two", vec![3, 4], json!({"five": 5})];
/// assert_eq!(p.to_json(), Some(r#"[1,"two",[3,4],{"five":5}]"#));
/// ```
#[macro_export]
macro_rules! params {
    () => {
        $crate::Params::none()
    };
    ($($arg:expr),+ $(,)?) => {
        $crate::Params::positional(&( $( &$arg, )+ ))
    };
}

thread_local! {
    /// Where params are serialized before being copied out (taken while in
    /// use, so params built inside a `Serialize` impl get a buffer of their
    /// own).
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The largest scratch buffer kept between params.
const SCRATCH_KEPT: usize = 64 * 1024;

/// The start of a JSON text, for error messages about it.
fn preview(text: &str) -> &str {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_are_sent_as_built() {
        let table: Vec<(Params, Option<&str>)> = vec![
            (Params::none(), None),
            (params![], None),
            (params![1, 2], Some("[1,2]")),
            (params![json!({"foo": "bar"})], Some(r#"[{"foo":"bar"}]"#)),
            (
                Params::from(json!({"bar": 1, "baz": 2})),
                Some(r#"{"bar":1,"baz":2}"#),
            ),
            (Params::from(json!([])), Some("[]")),
            (Params::from(json!({})), Some("{}")),
            (Params::from(json!(null)), None),
            (Params::from(json!(5)), Some("[5]")),
            (Params::from(json!("s")), Some(r#"["s"]"#)),
            (Params::positional(&Vec::<u8>::new()), Some("[]")),
            (ParamsBuilder::new().finish(), Some("[]")),
        ];
        for (params, expected) in table {
            assert_eq!(params.to_json(), expected, "{params:?}");
        }
    }

    #[test]
    fn wrong_shapes_are_kept_as_errors() {
        let not_array = Params::positional(&json!({"a": 1}));
        assert!(not_array.wire().unwrap_err().contains("JSON array"));
        let not_object = Params::named(&[1, 2]);
        assert!(not_object.wire().unwrap_err().contains("JSON object"));
        let mut bad_key = std::collections::HashMap::new();
        bad_key.insert((1, 2), 3);
        assert!(Params::named(&bad_key).is_invalid());
        let mut builder = ParamsBuilder::new();
        builder.push(&1).push(&bad_key).push(&3);
        let err = builder.finish();
        assert!(err.wire().unwrap_err().contains("argument 1"), "{err:?}");
    }

    #[test]
    fn params_built_while_building_params_are_their_own() {
        /// Builds other params while it is serialized.
        struct Nested(u32);
        impl Serialize for Nested {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let inner = match self.0 {
                    0 => params![],
                    n => params![Nested(n - 1), "x".repeat(100)],
                };
                s.serialize_str(inner.to_json().unwrap_or("none"))
            }
        }
        let p = params![Nested(2), 5];
        // What each level serializes to, built without `Params`.
        fn text(n: u32) -> String {
            match n {
                0 => "none".to_owned(),
                n => serde_json::to_string(&(text(n - 1), "x".repeat(100))).unwrap(),
            }
        }
        let expected = serde_json::to_string(&(text(2), 5)).unwrap();
        assert_eq!(p.to_json(), Some(expected.as_str()));
        // A large param is not kept as scratch, and the next are unaffected.
        let big = params!["y".repeat(SCRATCH_KEPT * 2)];
        assert_eq!(big.to_json().map(str::len), Some(SCRATCH_KEPT * 2 + 4));
        assert_eq!(params![1, 2].to_json(), Some("[1,2]"));
    }

    #[test]
    fn short_and_long_params_are_the_same_params_whichever_way_they_were_built() {
        let short = r#"["bench",42]"#;
        let at_limit = format!(r#"["{}"]"#, "a".repeat(INLINE - 4));
        let long = format!(r#"["{}"]"#, "a".repeat(INLINE - 3));
        assert!(matches!(params!["bench", 42].0, Repr::Short(_)));
        assert!(matches!(
            Params::from_json(at_limit.as_str()).0,
            Repr::Short(_)
        ));
        assert!(matches!(Params::from_json(long.as_str()).0, Repr::Json(_)));
        for text in [short, "[]", "{}", "[\"é😀\"]", &at_limit, &long] {
            let value: Value = serde_json::from_str(text).unwrap();
            let mut builder = ParamsBuilder::new();
            for arg in value.as_array().into_iter().flatten() {
                builder.push(arg);
            }
            let mut built = vec![
                Params::from_json(text),
                Params::from_json(format!(" {text} ")),
                Params::from(value.clone()),
            ];
            if value.is_array() {
                built.push(Params::positional(&value));
                built.push(builder.finish());
            } else {
                built.push(Params::named(&value));
            }
            for params in &built {
                assert_eq!(params.to_json(), Some(text), "{params:?}");
                assert_eq!(params.wire(), Ok(Some(text.as_bytes())));
                assert_eq!(params.wire_len(), text.len());
                assert_eq!(params, &built[0], "one text, one value");
            }
        }
        assert_eq!(std::mem::size_of::<Params>(), 24, "no larger than before");
    }

    #[test]
    fn preview_cuts_on_char_boundaries() {
        let long = "é".repeat(100);
        assert!(preview(&long).len() <= 64);
        // Byte 64 falls inside an "é": the cut moves back to the char before it.
        let odd = format!("a{}", "é".repeat(100));
        assert_eq!(preview(&odd), format!("a{}", "é".repeat(31)));
    }

    #[test]
    fn json_text_is_trimmed_and_must_be_an_array_or_object() {
        let padded = Params::from_json(" \n[1, 2]\t");
        assert_eq!(padded.to_json(), Some("[1, 2]"));
        let scalar = Params::from_json("\"just a string\"");
        assert_eq!(
            scalar.wire().unwrap_err(),
            "params must be a JSON array or object, got `\"just a string\"`"
        );
        let long = format!("\"{}\"", "x".repeat(100));
        let err = Params::from_json(long).wire().unwrap_err().to_owned();
        assert!(
            err.ends_with(&format!("got `\"{}`", "x".repeat(63))),
            "only the start of a long text is quoted: {err}"
        );
    }

    #[test]
    fn conversions_keep_the_shape_they_are_given() {
        let raw = serde_json::value::RawValue::from_string(r#"{"b": 1, "a": 2}"#.into()).unwrap();
        assert_eq!(Params::from(raw).to_json(), Some(r#"{"b": 1, "a": 2}"#));
        assert_eq!(
            Params::from(vec![json!(1), json!("two")]).to_json(),
            Some(r#"[1,"two"]"#)
        );
        let mut map = serde_json::Map::new();
        map.insert("k".into(), json!(true));
        assert_eq!(Params::from(map).to_json(), Some(r#"{"k":true}"#));
        assert_eq!(Params::from(()).to_json(), None);
        assert_eq!(Params::default().to_json(), None);
    }

    #[test]
    fn debug_shows_the_text_or_the_reason() {
        assert_eq!(format!("{:?}", Params::none()), "Params::none()");
        assert_eq!(format!("{:?}", params![1]), "Params([1])");
        assert_eq!(
            format!("{:?}", Params::from_json("5")),
            r#"Params::invalid("params must be a JSON array or object, got `5`")"#
        );
    }
}
