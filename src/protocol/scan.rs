//! A structural scan of one JSON-RPC envelope: where each top-level member
//! of an object starts and ends, found without parsing the values. Strings
//! are crossed with `memchr` (many bytes per step), so a 1 MiB result costs
//! a fraction of what serde_json's value skipper does.
//!
//! The scan locates; it does not validate values. Every member the
//! connection uses is parsed afterwards by serde_json (the id, the method,
//! the params, the error object) or by the caller's decoder (the result), and
//! those parses validate. Whatever the scan does not handle — an escaped key,
//! a duplicate member, broken nesting, trailing text — makes it give up
//! (`None`), and the serde_json path classifies the message instead, with
//! its exact error messages.

/// The members an envelope may have, as raw JSON text (`Some` when present,
/// even as `null`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields<'a> {
    pub jsonrpc: Option<&'a str>,
    pub id: Option<&'a str>,
    pub method: Option<&'a str>,
    pub params: Option<&'a str>,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The result is a string the scan crossed without meeting a backslash
    /// (so decoding need not look for one again).
    pub result_unescaped: bool,
    /// When `params` is an object the scan could read: its subscription
    /// members (what [`subscription_params`] finds in it), read in the same
    /// pass, so a subscription's notification is scanned once.
    pub params_members: Option<SubscriptionParams<'a>>,
}

/// The members of an envelope.
const KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// Where `params` is in [`KEYS`]: its object value is read for
/// [`SUBSCRIPTION_KEYS`] while the envelope is scanned.
const PARAMS: usize = 3;

/// The members of a subscription notification's params.
const SUBSCRIPTION_KEYS: [&str; 3] = ["subscription", "result", "error"];

/// The members of the JSON object that is the whole of `text`.
pub(crate) fn object(text: &str) -> Option<Fields<'_>> {
    let bytes = text.as_bytes();
    let start = skip_ws(bytes, 0);
    let scanned = envelope(text, start)?;
    (skip_ws(bytes, scanned.end) == bytes.len()).then(|| fields(scanned))
}

/// The [`KEYS`] members of the object starting at `start`: [`members`],
/// after a look for the shape nearly every answer has.
fn envelope(text: &str, start: usize) -> Option<Scanned<'_, 6>> {
    plain_answer(text, start).or_else(|| members(text, start, KEYS, Some(PARAMS)))
}

/// What [`members`] finds in `{"jsonrpc":"2.0","id":<digits>,"result":<value>}`
/// written without spaces, the shape of nearly every answer to our calls,
/// found by comparing its fixed parts instead of reading and matching each
/// key. Anything else (spaces, other members or order, an id that is not
/// digits) is `None`, and [`members`] reads it.
fn plain_answer(text: &str, start: usize) -> Option<Scanned<'_, 6>> {
    const HEAD: &[u8] = br#"{"jsonrpc":"2.0","id":"#;
    const RESULT: &[u8] = br#","result":"#;
    let bytes = text.as_bytes();
    let id_start = start + HEAD.len();
    if bytes.get(start..id_start)? != HEAD {
        return None;
    }
    let digits = bytes[id_start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let id_end = id_start + digits;
    let result_start = id_end + RESULT.len();
    if digits == 0 || bytes.get(id_end..result_start)? != RESULT {
        return None;
    }
    let (result_end, unescaped) = match bytes.get(result_start)? {
        b'"' => string_escaped(bytes, result_start).map(|(end, escaped)| (end, !escaped))?,
        _ => (value(bytes, result_start)?, false),
    };
    if bytes.get(result_end) != Some(&b'}') {
        return None;
    }
    let member = |range: std::ops::Range<usize>, unescaped| Member {
        text: &text[range],
        unescaped,
    };
    // `"2.0"` where HEAD has it; the slots are those of KEYS.
    let version = start + br#"{"jsonrpc":"#.len();
    let mut found = [None; 6];
    found[0] = Some(member(version..version + br#""2.0""#.len(), false));
    found[1] = Some(member(id_start..id_end, false));
    found[4] = Some(member(result_start..result_end, unescaped));
    Some(Scanned {
        found,
        inner: None,
        end: result_end + 1,
    })
}

fn fields(scanned: Scanned<'_, 6>) -> Fields<'_> {
    let [jsonrpc, id, method, params, result, error] = scanned.found;
    Fields {
        jsonrpc: jsonrpc.map(|m| m.text),
        id: id.map(|m| m.text),
        method: method.map(|m| m.text),
        params: params.map(|m| m.text),
        result: result.map(|m| m.text),
        error: error.map(|m| m.text),
        result_unescaped: result.is_some_and(|m| m.unescaped),
        params_members: scanned.inner.map(subscription_members),
    }
}

/// The members of a subscription notification's params:
/// `{"subscription": .., "result": ..}` or `{"subscription": .., "error": ..}`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubscriptionParams<'a> {
    pub subscription: Option<&'a str>,
    pub result: Option<&'a str>,
    pub result_unescaped: bool,
    pub error: Option<&'a str>,
}

/// The subscription members of `params`, when it is one JSON object.
pub(crate) fn subscription_params(params: &str) -> Option<SubscriptionParams<'_>> {
    whole_object(params, SUBSCRIPTION_KEYS).map(subscription_members)
}

fn subscription_members(
    [subscription, result, error]: [Option<Member<'_>>; 3],
) -> SubscriptionParams<'_> {
    SubscriptionParams {
        subscription: subscription.map(|m| m.text),
        result: result.map(|m| m.text),
        result_unescaped: result.is_some_and(|m| m.unescaped),
        error: error.map(|m| m.text),
    }
}

/// A member's raw text, and whether it is a string without a backslash.
#[derive(Debug, Clone, Copy)]
struct Member<'a> {
    text: &'a str,
    unescaped: bool,
}

/// What [`members`] found in one object.
struct Scanned<'a, const N: usize> {
    /// The members named by its keys.
    found: [Option<Member<'a>>; N],
    /// The [`SUBSCRIPTION_KEYS`] members of the object value of the key it
    /// was asked to look into, when that value is an object it could read.
    inner: Option<[Option<Member<'a>>; 3]>,
    /// Just past the object's closing brace.
    end: usize,
}

/// The members named `keys` of the object that is the whole of `text`.
fn whole_object<'a, const N: usize>(
    text: &'a str,
    keys: [&str; N],
) -> Option<[Option<Member<'a>>; N]> {
    let bytes = text.as_bytes();
    let start = skip_ws(bytes, 0);
    let scanned = members(text, start, keys, None)?;
    (skip_ws(bytes, scanned.end) == bytes.len()).then_some(scanned.found)
}

/// The elements of the JSON array that is the whole of `text`, each as
/// `each` makes it from the element's raw text and, for an object the scan
/// could read, its envelope members (what [`object`] finds in that text):
/// one pass locates the elements and reads their members.
pub(crate) fn array<'a, T>(
    text: &'a str,
    mut each: impl FnMut(&'a str, Option<Fields<'a>>) -> T,
) -> Option<Vec<T>> {
    let bytes = text.as_bytes();
    let mut i = skip_ws(bytes, 0);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(bytes, i + 1);
    // Room for elements of 36 bytes on average (the shortest response,
    // `{"jsonrpc":"2.0","id":1,"result":1}`), so a batch answer is
    // collected without regrowing.
    let mut items = Vec::with_capacity((bytes.len() / 36).clamp(1, 4096));
    if bytes.get(i) == Some(&b']') {
        i += 1;
    } else {
        loop {
            let (end, found) = match envelope(text, i) {
                Some(scanned) => (scanned.end, Some(fields(scanned))),
                // Not an object, or one the scan leaves to serde_json.
                None => (value(bytes, i)?, None),
            };
            items.push(each(&text[i..end], found));
            i = skip_ws(bytes, end);
            match bytes.get(i)? {
                b',' => i = skip_ws(bytes, i + 1),
                b']' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(bytes, i) == bytes.len()).then_some(items)
}

/// The members named `keys` of the object starting at `start`, and where
/// the object ends. Other members are crossed and ignored. When `inner` is
/// the position of a key in `keys` whose value is an object, that object's
/// [`SUBSCRIPTION_KEYS`] members are read while crossing it (one pass
/// instead of a second scan of the same bytes).
fn members<'a, const N: usize>(
    text: &'a str,
    start: usize,
    keys: [&str; N],
    inner: Option<usize>,
) -> Option<Scanned<'a, N>> {
    let bytes = text.as_bytes();
    if bytes.get(start) != Some(&b'{') {
        return None;
    }
    let mut scanned = Scanned {
        found: [None; N],
        inner: None,
        end: 0,
    };
    let mut i = skip_ws(bytes, start + 1);
    if bytes.get(i) == Some(&b'}') {
        scanned.end = i + 1;
        return Some(scanned);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string(bytes, i)?;
        let key = &text[i + 1..key_end - 1];
        if key.contains('\\') {
            return None;
        }
        i = skip_ws(bytes, key_end);
        if bytes.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(bytes, i + 1);
        let slot = keys.iter().position(|k| *k == key);
        let (end, unescaped) = match bytes.get(i) {
            Some(b'"') => string_escaped(bytes, i).map(|(end, escaped)| (end, !escaped))?,
            Some(b'{') if slot.is_some() && slot == inner => {
                match members(text, i, SUBSCRIPTION_KEYS, None) {
                    Some(object) => {
                        scanned.inner = Some(object.found);
                        (object.end, false)
                    }
                    // One the scan leaves to serde_json: only located.
                    None => (value(bytes, i)?, false),
                }
            }
            _ => (value(bytes, i)?, false),
        };
        if let Some(slot) = slot {
            let member = Member {
                text: &text[i..end],
                unescaped,
            };
            if scanned.found[slot].replace(member).is_some() {
                return None;
            }
        }
        i = skip_ws(bytes, end);
        match bytes.get(i)? {
            b',' => i = skip_ws(bytes, i + 1),
            b'}' => {
                scanned.end = i + 1;
                return Some(scanned);
            }
            _ => return None,
        }
    }
}

/// Where the value starting at `i` ends.
fn value(bytes: &[u8], i: usize) -> Option<usize> {
    match bytes.get(i)? {
        b'"' => string(bytes, i),
        b'{' | b'[' => nested(bytes, i),
        b',' | b'}' | b']' | b':' => None,
        _ => {
            // A number or a literal: up to the next delimiter.
            let len = bytes[i..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(bytes.len() - i);
            Some(i + len)
        }
    }
}

/// Where the string starting at `i` (a quote) ends, just past its closing quote.
fn string(bytes: &[u8], i: usize) -> Option<usize> {
    string_escaped(bytes, i).map(|(end, _)| end)
}

/// [`string`], and whether the string has a backslash escape.
fn string_escaped(bytes: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut at = i + 1;
    let mut escaped = false;
    loop {
        let rest = bytes.get(at..)?;
        // Most strings of an envelope are short (keys, ids, method names):
        // a plain look at the first bytes finds their end sooner than
        // memchr's vector set-up; longer ones go to memchr.
        let head = &rest[..rest.len().min(SHORT_STRING)];
        let found = match head.iter().position(|&b| b == b'"' || b == b'\\') {
            Some(n) => at + n,
            None => at + head.len() + memchr::memchr2(b'"', b'\\', &rest[head.len()..])?,
        };
        if bytes[found] == b'"' {
            return Some((found + 1, escaped));
        }
        // A backslash and the character it escapes (for \u, the four hex
        // digits that follow cannot be a quote or a backslash).
        escaped = true;
        at = found + 2;
    }
}

/// How many bytes of a string [`string_escaped`] looks at one by one
/// before handing the rest to memchr.
const SHORT_STRING: usize = 16;

/// Where the object or array starting at `i` ends, just past its bracket.
fn nested(bytes: &[u8], i: usize) -> Option<usize> {
    let mut open = Brackets::default();
    open.push(bytes[i]);
    let mut at = i + 1;
    while let Some(&b) = bytes.get(at) {
        match b {
            b'"' => {
                at = string(bytes, at)?;
                continue;
            }
            b'{' | b'[' => open.push(b),
            b'}' | b']' => {
                let expected = if b == b'}' { b'{' } else { b'[' };
                if open.pop() != Some(expected) {
                    return None;
                }
                if open.is_empty() {
                    return Some(at + 1);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// The brackets open at one point of a scan, innermost last: the first 64
/// levels as bits (no allocation for the values met in practice), deeper
/// ones a byte each.
#[derive(Default)]
struct Brackets {
    /// One bit a level (1 for `{`), the innermost of the first 64 lowest.
    shallow: u64,
    /// Levels past the 64th.
    deep: Vec<u8>,
    depth: usize,
}

impl Brackets {
    fn push(&mut self, open: u8) {
        if self.depth < 64 {
            self.shallow = self.shallow << 1 | u64::from(open == b'{');
        } else {
            self.deep.push(open);
        }
        self.depth += 1;
    }

    fn pop(&mut self) -> Option<u8> {
        self.depth = self.depth.checked_sub(1)?;
        if self.depth >= 64 {
            return self.deep.pop();
        }
        let open = if self.shallow & 1 == 1 { b'{' } else { b'[' };
        self.shallow >>= 1;
        Some(open)
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }
}

/// The content of `text` when it is one JSON string that needs no
/// unescaping: a quote, then no quote, backslash or control character, then
/// a quote. (The content is then exactly the string's value.)
pub(crate) fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let clean = !inner.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
    clean.then_some(inner)
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_located_whatever_their_order_and_spacing() {
        let text = r#" { "result" : {"a":[1,"]}\"",{}]} , "id":7,"jsonrpc":"2.0","x":[[]] } "#;
        let fields = object(text).unwrap();
        assert_eq!(fields.result, Some(r#"{"a":[1,"]}\"",{}]}"#));
        assert!(!fields.result_unescaped, "not a string");
        assert_eq!(fields.id, Some("7"));
        assert_eq!(fields.jsonrpc, Some(r#""2.0""#));
        assert_eq!(
            (fields.method, fields.params, fields.error),
            (None, None, None)
        );
    }

    #[test]
    fn strings_with_escapes_are_crossed_correctly() {
        let table = [
            r#"{"result":"a\"b","id":1}"#,
            r#"{"result":"a\\","id":1}"#,
            r#"{"result":"\\\"\\","id":1}"#,
            r#"{"result":"\u0022","id":1}"#,
        ];
        for text in table {
            let fields = object(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(fields.id, Some("1"), "{text}");
            let back: String = serde_json::from_str(fields.result.unwrap()).unwrap();
            let whole: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(back, whole["result"], "{text}");
        }
    }

    #[test]
    fn what_the_scan_does_not_handle_is_left_to_serde() {
        for text in [
            r#"{"id":1,"id":2}"#,
            r#"{"i\u0064":1}"#,
            r#"{"result":[1}"#,
            r#"{"result":{]}"#,
            r#"{"result":1} x"#,
            r#"{"result":1"#,
            r#"{"result":"open}"#,
            r#"{"result":}"#,
            r#"{"result" 1}"#,
            r#"{1:2}"#,
            "{",
            "",
        ] {
            assert_eq!(object(text), None, "{text:?}");
        }
    }

    #[test]
    fn strings_end_where_serde_says_on_either_side_of_the_short_look() {
        for len in 0..3 * SHORT_STRING {
            for at in 0..=len {
                // An escaped quote at `at` of a string of `len` plain bytes.
                let body = format!("{}\\\"{}", "a".repeat(at), "b".repeat(len - at));
                let text = format!(r#"{{"result":"{body}","id":1}}"#);
                let fields = object(&text).unwrap_or_else(|| panic!("{text}"));
                let back: String = serde_json::from_str(fields.result.unwrap()).unwrap();
                assert_eq!(back.len(), len + 1, "{text}");
                assert!(!fields.result_unescaped);
                let plain = format!(r#"{{"result":"{}","id":1}}"#, "c".repeat(len));
                let fields = object(&plain).unwrap();
                assert_eq!(fields.result.map(str::len), Some(len + 2));
                assert!(fields.result_unescaped);
            }
        }
    }

    #[test]
    fn subscription_params_are_located() {
        let p = subscription_params(r#"{"result":"0xab","subscription":"0x1"}"#).unwrap();
        assert_eq!(
            (p.subscription, p.result, p.result_unescaped, p.error),
            (Some(r#""0x1""#), Some(r#""0xab""#), true, None)
        );
        let closed = subscription_params(r#"{"subscription":7,"error":{"code":1}}"#).unwrap();
        assert_eq!(
            (closed.subscription, closed.error),
            (Some("7"), Some(r#"{"code":1}"#))
        );
        assert_eq!(subscription_params("[1]"), None);
        assert_eq!(
            subscription_params(r#"{"a":1}"#).unwrap().subscription,
            None
        );
    }

    #[test]
    fn params_members_are_read_with_the_envelope_as_a_second_scan_reads_them() {
        for text in [
            r#"{"jsonrpc":"2.0","method":"ticks","params":{"subscription":7,"result":12}}"#,
            r#"{"method":"s","params":{"result":{"a":[1,"}"]},"subscription":"0x1"},"jsonrpc":"2.0"}"#,
            r#"{"method":"s","params":{"subscription":"a\"b","error":{"code":1}}}"#,
            r#"{"method":"s","params":{"other":1}}"#,
            r#"{"method":"s","params":{}}"#,
            r#"{"method":"s","params":[1,2]}"#,
            r#"{"method":"s"}"#,
        ] {
            let fields = object(text).unwrap_or_else(|| panic!("{text}"));
            let second = fields.params.and_then(subscription_params);
            assert_eq!(fields.params_members, second, "{text}");
        }
        // Params the scan leaves to serde_json are still located; their
        // members are not read (routing scans them, and gives up too).
        for text in [
            r#"{"method":"s","params":{"result":1,"result":2}}"#,
            r#"{"method":"s","params":{"subscr\u0069ption":1}}"#,
        ] {
            let fields = object(text).unwrap_or_else(|| panic!("{text}"));
            assert!(fields.params.is_some(), "{text}");
            assert_eq!(fields.params_members, None, "{text}");
            assert_eq!(fields.params.and_then(subscription_params), None, "{text}");
        }
        let batch = r#"[{"method":"s","params":{"subscription":1,"result":2}}]"#;
        let elements = array(batch, |_, found| found).unwrap();
        let members = elements[0].unwrap().params_members.unwrap();
        assert_eq!(
            (members.subscription, members.result),
            (Some("1"), Some("2"))
        );
    }

    #[test]
    fn plain_strings_are_exactly_those_without_escapes_or_controls() {
        for (text, plain) in [
            (r#""abc""#, Some("abc")),
            (r#""""#, Some("")),
            ("\"\u{7f}é\"", Some("\u{7f}é")),
            (r#""a\"b""#, None),
            (r#""a"b""#, None),
            ("\"a\nb\"", None),
            (r#"""#, None),
            ("abc", None),
            (r#""abc"#, None),
            (r#"abc""#, None),
        ] {
            assert_eq!(plain_string(text), plain, "{text:?}");
        }
    }

    fn texts(text: &str) -> Option<Vec<&str>> {
        array(text, |element, _| element)
    }

    #[test]
    fn arrays_are_split_into_elements() {
        assert_eq!(
            texts(r#" [ {"a":"]"} , 2,"x" ,[1,[2]] ] "#),
            Some(vec![r#"{"a":"]"}"#, "2", r#""x""#, "[1,[2]]"])
        );
        assert_eq!(texts("[]"), Some(vec![]));
        assert_eq!(texts("[1,]"), None);
        assert_eq!(texts("[1 2]"), None);
        assert_eq!(texts("[1] 2"), None);
    }

    #[test]
    fn array_elements_come_with_their_members() {
        let text =
            r#"[{"id":1,"result":"a"}, 7, {"id":2,"id":3}, {"i\u0064":4}, {"error":{"code":1}} ]"#;
        let elements = array(text, |element, found| (element, found)).unwrap();
        assert_eq!(elements.len(), 5);
        for (element, found) in elements {
            assert_eq!(found, object(element), "{element}");
        }
        // A duplicate or escaped key leaves the element to serde_json, as
        // `object` does; the element is still located.
        assert_eq!(
            texts(text).unwrap()[2..4],
            [r#"{"id":2,"id":3}"#, r#"{"i\u0064":4}"#]
        );
    }

    #[test]
    fn a_large_string_result_is_one_slice() {
        let big = "y".repeat(1 << 20);
        let text = format!(r#"{{"jsonrpc":"2.0","id":3,"result":"{big}"}}"#);
        let fields = object(&text).unwrap();
        assert_eq!(fields.result.unwrap().len(), big.len() + 2);
        assert!(fields.result_unescaped);
        let escaped = object(r#"{"result":"a\nb"}"#).unwrap();
        assert!(!escaped.result_unescaped);
    }

    #[test]
    fn brackets_match_at_any_depth() {
        for depth in [1, 63, 64, 65, 200] {
            // Alternating kinds, so a mix-up between levels shows.
            let opens: String = (0..depth)
                .map(|d| if d % 3 == 0 { '{' } else { '[' })
                .collect();
            let closes: String = opens
                .chars()
                .rev()
                .map(|c| if c == '{' { '}' } else { ']' })
                .collect();
            let text = format!("{opens}{closes}");
            assert_eq!(
                nested(text.as_bytes(), 0),
                Some(text.len()),
                "depth {depth}"
            );
            // One closing bracket of the wrong kind, at each level in turn.
            for k in 0..depth {
                let mut wrong = text.clone().into_bytes();
                let at = depth + k;
                wrong[at] = if wrong[at] == b'}' { b']' } else { b'}' };
                assert_eq!(nested(&wrong, 0), None, "depth {depth}, closing {k}");
            }
        }
    }

    /// What [`members`] alone finds at `start`, for comparing the fast path.
    fn by_members(text: &str, start: usize) -> Option<(Fields<'_>, usize)> {
        members(text, start, KEYS, Some(PARAMS)).map(read)
    }

    fn by_fast_path(text: &str, start: usize) -> Option<(Fields<'_>, usize)> {
        plain_answer(text, start).map(read)
    }

    fn read(scanned: Scanned<'_, 6>) -> (Fields<'_>, usize) {
        let end = scanned.end;
        (fields(scanned), end)
    }

    #[test]
    fn the_plain_answer_shape_is_read_as_members_reads_it() {
        let taken = [
            r#"{"jsonrpc":"2.0","id":1,"result":["bench",42]}"#,
            r#"{"jsonrpc":"2.0","id":18446744073709551615,"result":"plain"}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":"a\"b"}"#,
            r#"{"jsonrpc":"2.0","id":007,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":{"a":[1,"]}"]}}"#,
            r#"{"jsonrpc":"2.0","id":3,"result":-1.5e3}"#,
        ];
        for text in taken {
            let fast = by_fast_path(text, 0).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(Some(fast), by_members(text, 0), "{text}");
            assert_eq!(fast.1, text.len(), "{text}");
        }
        // Left to `members`, which reads them (or refuses them) itself.
        let declined = [
            r#"{"jsonrpc":"2.0","id":1,"result":1,"error":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":1 }"#,
            r#"{"jsonrpc":"2.0", "id":1,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":"1","result":1}"#,
            r#"{"jsonrpc":"2.0","id":-1,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":"open}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":[1}"#,
            r#"{"jsonrpc":"2.0","id":,"result":1}"#,
            r#"{"jsonrpc":"2.0","id":1"#,
            r#"{"jsonrpc":"2.0","id":"#,
            r#"{"jsonrpc":"1.0","id":1,"result":1}"#,
        ];
        for text in declined {
            assert_eq!(by_fast_path(text, 0), None, "{text}");
        }
        // In a batch, each element is read where it starts.
        let batch =
            r#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":[2]}]"#;
        let read = array(batch, |item, fields| (item, fields.and_then(|f| f.id))).unwrap();
        assert_eq!(
            read,
            [
                (r#"{"jsonrpc":"2.0","id":1,"result":1}"#, Some("1")),
                (r#"{"jsonrpc":"2.0","id":2,"result":[2]}"#, Some("2")),
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"id":1,"result":{deep}}}"#);
        assert_eq!(object(&text).unwrap().result.unwrap().len(), 200_000);
    }
}

#[cfg(test)]
mod plain_answers_agree_with_members {
    use super::{fields, members, plain_answer, KEYS, PARAMS};
    use proptest::prelude::*;

    proptest! {
        /// Answers of the plain shape, whole or cut short or with one byte
        /// changed: whenever the fast path reads one, `members` reads the
        /// same members and the same end.
        #[test]
        fn the_fast_path_reads_what_members_reads(
            id in prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9a-z\\-\"]{0,4}"],
            result in prop_oneof![
                Just("[\"bench\",42]".to_owned()),
                "\"[a-z\\\\\"]{0,6}\"",
                "[\\[\\]{}\",:0-9 ]{0,8}",
                Just(String::new()),
            ],
            cut in any::<prop::sample::Index>(),
            change in any::<Option<(prop::sample::Index, u8)>>(),
        ) {
            let mut text = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#).into_bytes();
            if let Some((at, byte)) = change {
                let at = at.index(text.len());
                text[at] = byte & 0x7f;
            }
            text.truncate(text.len() - cut.index(text.len() / 4 + 1).min(text.len()));
            let text = String::from_utf8(text).unwrap();
            if let Some(fast) = plain_answer(&text, 0) {
                let slow = members(&text, 0, KEYS, Some(PARAMS));
                prop_assert!(slow.is_some(), "{}", text);
                let slow = slow.unwrap();
                prop_assert_eq!(fast.end, slow.end, "{}", text);
                prop_assert_eq!(fields(fast), fields(slow), "{}", text);
            }
        }
    }
}

#[cfg(test)]
mod plain_strings_agree_with_serde {
    use super::plain_string;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_plain_string_is_what_serde_reads(
            text in prop_oneof![
                any::<String>().prop_map(|s| format!("\"{s}\"")),
                r#""[a-z"\\\u{0}-\u{1f}\u{7f}é ]{0,12}"?"#,
                any::<String>(),
            ]
        ) {
            if let Some(plain) = plain_string(&text) {
                let read = serde_json::from_str::<String>(&text).ok();
                prop_assert_eq!(read.as_deref(), Some(plain));
            }
            // A string serde reads without an escape is never refused.
            if !text.contains('\\') {
                if let Ok(read) = serde_json::from_str::<String>(&text) {
                    if text.len() == read.len() + 2 {
                        prop_assert_eq!(plain_string(&text), Some(read.as_str()));
                    }
                }
            }
        }
    }
}
