//! Token counts as a provider reports them, in one shape for every family, and the two ways a
//! family's reading sees a usage object: a parsed `Value` (an event of a stream) or [`Counts`]
//! (a complete JSON answer, read without building one).

use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::json::{Scalar, Walk};

/// Token counts of one request as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens served from the provider's prompt cache (a subset of `input_tokens`).
    pub cached_tokens: u64,
    /// Input tokens written to the provider's prompt cache (a subset of `input_tokens`,
    /// apart from `cached_tokens`; Anthropic bills them above plain input).
    pub cache_write_tokens: u64,
    /// Of `cache_write_tokens`, those written with a one-hour lifetime.
    pub cache_write_1h_tokens: u64,
    /// Output tokens spent on reasoning (a subset of `output_tokens`).
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// A usage object as a family's reading asks it.
pub trait Tree {
    /// The value at the path of object `keys` as `Value::as_u64` reads it: `None` when absent
    /// or not a whole number from 0 to [`MAX_COUNT`].
    fn num(&self, keys: &[&str]) -> Option<u64>;
    /// Whether the object has the member `key`, whatever its value (`null` included).
    fn has(&self, key: &str) -> bool;
    /// Whether the usage object is `null`.
    fn is_null(&self) -> bool;
}

impl Tree for Value {
    /// Walks the keys in place: `Value::pointer` allocates each one.
    fn num(&self, keys: &[&str]) -> Option<u64> {
        let mut cur = self;
        for key in keys {
            cur = cur.get(key)?;
        }
        cur.as_u64().filter(|n| *n <= MAX_COUNT)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
}

/// The largest count of tokens an answer is believed: 2⁴⁰, a million times any context window.
/// Past it a count is not one (an upstream's bug or a lie) and the usage is unreadable, so the
/// request is charged its reservation; sums of believed counts stay far from the end of the
/// ledger's 64-bit integers.
pub(crate) const MAX_COUNT: u64 = 1 << 40;

/// Whether a usage object has, at one of `paths`, a value that is neither a whole number up to
/// [`MAX_COUNT`] nor `null`: [`Counts::unreadable`] for a parsed value.
pub(crate) fn unreadable(u: &Value, paths: &[&[&str]]) -> bool {
    paths.iter().any(|keys| {
        let mut cur = Some(u);
        for key in *keys {
            cur = cur.and_then(|c| c.get(key));
        }
        cur.is_some_and(|v| !v.is_null() && v.as_u64().is_none_or(|n| n > MAX_COUNT))
    })
}

/// Whether a usage object reports a count: a whole number at one of the top-level `paths` (a
/// family's own counts, not a total). One that reports none (`{}`, a total alone, a string,
/// `null`) reports no usage, as a missing one does: the answer's zero tokens are not a count,
/// and a key with a budget is charged its reservation.
pub(crate) fn reports(u: &dyn Tree, paths: &[&[&str]]) -> bool {
    paths
        .iter()
        .filter(|keys| keys.len() == 1)
        .any(|keys| u.num(keys).is_some())
}

/// The whole number at the path of object `keys` in `u`, 0 when absent.
pub(crate) fn n(u: &dyn Tree, keys: &[&str]) -> u64 {
    u.num(keys).unwrap_or(0)
}

/// At most this many paths are read from a usage object.
const MAX_PATHS: usize = 10;

/// The values at a fixed set of paths of a usage object, read from a JSON answer without
/// building the object: what the family's reading asks of it, and nothing else. Reads the
/// same as a parsed `Value` would (a repeated member counts as its last, as a parse keeps).
#[derive(Debug, PartialEq)]
pub(crate) struct Counts {
    paths: &'static [&'static [&'static str]],
    /// A bit for each path with a value (of any kind, `null` included).
    present: u32,
    /// A bit for each path whose value is a whole number `as_u64` reads, which is in `nums`.
    numeric: u32,
    /// A bit for each path whose value is `null`.
    nulls: u32,
    nums: [u64; MAX_PATHS],
    /// The usage member is `null`.
    null: bool,
}

/// The kind of a JSON value, as far as a path's reading cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num(u64),
    Null,
    Object,
    Other,
}

impl Counts {
    /// Reads a complete JSON answer: `None` when it is not JSON (nor UTF-8, which a full parse
    /// refused too, also inside members skipped here); `Some(None)` when it is JSON without a
    /// top-level `member`; otherwise the values at `paths` inside the last `member`. An answer
    /// that is an array is a stream of answers (Gemini's without `alt=sse`): the last of its
    /// objects that has a `member` counts. Every other member is checked by the parser and
    /// skipped unbuilt, with one difference from a full parse: serde_json skips a number beyond
    /// `f64`'s range (`1e400`) where its full parse refuses it, so such a number in a member
    /// not read does not make the answer unreadable (RFC 8259 sets no range).
    ///
    /// The answer is read by a [`Walk`] where it can be, and by serde_json's deserializer
    /// where the walk hands it over; both read the same (`benches/body.rs`: a chat completion
    /// with 16 KB of text 4.83 → 2.24 µs, the benchmark's short one 373 → 327 ns).
    pub(crate) fn read(
        body: &[u8],
        member: &'static str,
        paths: &'static [&'static [&'static str]],
    ) -> Option<Option<Counts>> {
        assert!(paths.len() <= MAX_PATHS, "too many usage paths");
        std::str::from_utf8(body).ok()?;
        walk(body, member, paths).or_else(|| read_serde(body, member, paths))
    }

    /// Nothing read yet at `paths`.
    fn new(paths: &'static [&'static [&'static str]]) -> Self {
        Counts {
            paths,
            present: 0,
            numeric: 0,
            nulls: 0,
            nums: [0; MAX_PATHS],
            null: false,
        }
    }

    /// Every path, as a mask.
    fn all(&self) -> u32 {
        (1u32 << self.paths.len()) - 1
    }

    /// Which of the paths in `mask` go on with the member named `key` at `depth`.
    fn on(&self, depth: usize, mask: u32, key: &[u8]) -> u32 {
        let mut out = 0;
        for (i, path) in self.paths.iter().enumerate() {
            if mask & (1 << i) != 0 && path.get(depth).is_some_and(|k| k.as_bytes() == key) {
                out |= 1 << i;
            }
        }
        out
    }

    /// Before a member on the paths in `on` is read: a repeated member replaces all that an
    /// earlier one held.
    fn forget(&mut self, on: u32) {
        self.present &= !on;
        self.numeric &= !on;
        self.nulls &= !on;
    }

    /// Some path has a value that is neither a whole number up to [`MAX_COUNT`] nor `null` (a
    /// count sent as a string, a negative, a fraction, or past belief): what the answer cost
    /// cannot be read from it.
    pub(crate) fn unreadable(&self) -> bool {
        self.present & !self.numeric & !self.nulls != 0
    }

    /// After the member at `depth` on the paths in `on` was read as `kind`: the paths that end
    /// there have it.
    fn record(&mut self, on: u32, depth: usize, kind: Kind) {
        for (i, path) in self.paths.iter().enumerate() {
            if on & (1 << i) != 0 && path.len() == depth + 1 {
                self.present |= 1 << i;
                match kind {
                    Kind::Num(n) if n <= MAX_COUNT => {
                        self.numeric |= 1 << i;
                        self.nums[i] = n;
                    }
                    Kind::Num(_) => {}
                    Kind::Null => self.nulls |= 1 << i,
                    Kind::Object | Kind::Other => {}
                }
            }
        }
    }

    fn index(&self, keys: &[&str]) -> Option<usize> {
        let i = self.paths.iter().position(|p| *p == keys);
        debug_assert!(
            i.is_some(),
            "usage path {keys:?} is not among the paths read"
        );
        i
    }
}

/// [`Counts::read`] by serde_json's deserializer, for the answers [`walk`] leaves to it.
fn read_serde(
    body: &[u8],
    member: &'static str,
    paths: &'static [&'static [&'static str]],
) -> Option<Option<Counts>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match de
        .deserialize_any(Answer {
            member,
            paths,
            top: true,
        })
        .and_then(|c| de.end().map(|()| c))
    {
        Ok(counts) => Some(counts),
        // Not JSON (the visitor takes any value), or a number the visitor read is out of
        // `f64`'s range: the full parse decides, as it always did.
        Err(_) => serde_json::from_slice::<Value>(body).ok().map(|_| None),
    }
}

impl Tree for Counts {
    fn num(&self, keys: &[&str]) -> Option<u64> {
        let i = self.index(keys)?;
        (self.numeric & 1 << i != 0).then(|| self.nums[i])
    }

    fn has(&self, key: &str) -> bool {
        self.index(&[key])
            .is_some_and(|i| self.present & 1 << i != 0)
    }

    fn is_null(&self) -> bool {
        self.null
    }
}

/// [`Counts::read`] of a UTF-8 body without serde_json, for the answers that allow it (nearly
/// all): `None` when the [`Walk`] refuses the body, or meets what it leaves to serde_json (a
/// name with an escape, or a number serde_json would parse, not skip, that is not a whole
/// number of up to 18 digits). Reads what the visitors below read, value for value: it parses
/// exactly where they parse (the answer, the elements of an answer that is an array, the usage
/// member and the values on its paths) and skips where they skip.
fn walk(
    body: &[u8],
    member: &str,
    paths: &'static [&'static [&'static str]],
) -> Option<Option<Counts>> {
    let mut w = Walk::new(body);
    let found = if w.peek()? == b'[' {
        let mut found = None;
        if w.open(b']')? {
            loop {
                found = walk_answer(&mut w, member, paths)?.or(found);
                if !w.next(b']')? {
                    break;
                }
            }
        }
        found
    } else {
        walk_answer(&mut w, member, paths)?
    };
    w.end().then_some(found)
}

/// One answer, as [`Answer`] (not `top`) reads it.
fn walk_answer(
    w: &mut Walk,
    member: &str,
    paths: &'static [&'static [&'static str]],
) -> Option<Option<Counts>> {
    match w.peek()? {
        b'{' => {}
        b'[' => return w.skip().map(|()| None),
        _ => return walk_scalar(w).map(|_| None),
    }
    let mut found = None;
    if w.open(b'}')? {
        loop {
            let key = w.key()?;
            if key.contains(&b'\\') {
                return None;
            }
            if key == member.as_bytes() {
                let mut counts = Counts::new(paths);
                let mask = counts.all();
                counts.null = walk_node(w, &mut counts, 0, mask)? == Kind::Null;
                found = Some(counts);
            } else {
                w.skip()?;
            }
            if !w.next(b'}')? {
                break;
            }
        }
    }
    Some(found)
}

/// One value inside the usage member, as [`Node`] reads it.
fn walk_node(w: &mut Walk, counts: &mut Counts, depth: usize, mask: u32) -> Option<Kind> {
    match w.peek()? {
        b'{' => {}
        b'[' => return w.skip().map(|()| Kind::Other),
        _ => return walk_scalar(w),
    }
    if w.open(b'}')? {
        loop {
            let key = w.key()?;
            if key.contains(&b'\\') {
                return None;
            }
            let on = counts.on(depth, mask, key);
            if on == 0 {
                w.skip()?;
            } else {
                counts.forget(on);
                let kind = walk_node(w, counts, depth + 1, on)?;
                counts.record(on, depth, kind);
            }
            if !w.next(b'}')? {
                break;
            }
        }
    }
    Some(Kind::Object)
}

/// A scalar serde_json would parse: its [`Kind`], or `None` for a number other than a whole
/// one of up to 18 digits (which cannot be out of range).
fn walk_scalar(w: &mut Walk) -> Option<Kind> {
    match w.scalar()? {
        Scalar::Null => Some(Kind::Null),
        Scalar::Other => Some(Kind::Other),
        Scalar::Number { text, integer } => {
            if !integer || text[0] == b'-' || text.len() > 18 {
                return None;
            }
            Some(Kind::Num(
                text.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')),
            ))
        }
    }
}

/// An answer, or (not `top`) one element of an answer that is an array: finds its usage
/// member.
#[derive(Clone, Copy)]
struct Answer {
    member: &'static str,
    paths: &'static [&'static [&'static str]],
    top: bool,
}

impl<'de> DeserializeSeed<'de> for Answer {
    type Value = Option<Counts>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Counts>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Answer {
    type Value = Option<Counts>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        if self.top {
            let element = Answer { top: false, ..self };
            while let Some(counts) = seq.next_element_seed(element)? {
                found = counts.or(found);
            }
        } else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_member) = map.next_key_seed(KeyIs(self.member))? {
            if is_member {
                let mut counts = Counts::new(self.paths);
                let mask = counts.all();
                let root = map.next_value_seed(Node {
                    counts: &mut counts,
                    depth: 0,
                    mask,
                })?;
                counts.null = root == Kind::Null;
                found = Some(counts);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether a key is the one named.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<bool, E> {
        Ok(k == self.0)
    }
}

/// Which of the paths in `mask` go on with `key` at `depth` ([`Counts::on`]).
struct KeyOf<'c> {
    counts: &'c Counts,
    depth: usize,
    mask: u32,
}

impl<'de> DeserializeSeed<'de> for KeyOf<'_> {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyOf<'_> {
    type Value = u32;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<u32, E> {
        Ok(self.counts.on(self.depth, self.mask, k.as_bytes()))
    }
}

/// One value inside the usage member, at `depth` keys below it, on the way of the paths in
/// `mask`: an object's members on those paths are read into `counts`, the rest skipped.
struct Node<'c> {
    counts: &'c mut Counts,
    depth: usize,
    mask: u32,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Kind;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Kind;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_i64<E>(self, n: i64) -> Result<Kind, E> {
        // As `Value` stores it: a whole number ≥ 0 reads as one, whichever way it came.
        Ok(u64::try_from(n).map_or(Kind::Other, Kind::Num))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Kind, E> {
        Ok(Kind::Num(n))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Kind::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while let Some(on) = map.next_key_seed(KeyOf {
            counts: self.counts,
            depth: self.depth,
            mask: self.mask,
        })? {
            if on == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.counts.forget(on);
            let kind = map.next_value_seed(Node {
                counts: &mut *self.counts,
                depth: self.depth + 1,
                mask: on,
            })?;
            self.counts.record(on, self.depth, kind);
        }
        Ok(Kind::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ApiFamily;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// Every key a family reads inside a usage member, some others, and one spelled with an
    /// escape (`in\u0070ut_tokens` is `input_tokens`).
    const KEYS: &[&str] = &[
        "input_tokens",
        "output_tokens",
        "input_tokens_details",
        "output_tokens_details",
        "cached_tokens",
        "reasoning_tokens",
        "prompt_tokens",
        "completion_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "cache_creation",
        "ephemeral_1h_input_tokens",
        "promptTokenCount",
        "candidatesTokenCount",
        "cachedContentTokenCount",
        "thoughtsTokenCount",
        "total_tokens",
        "in\\u0070ut_tokens",
    ];

    /// Top-level members of an answer: the usage members, repeated ones among them.
    const MEMBERS: &[&str] = &["usage", "usageMetadata", "id", "choices", "us\\u0061ge"];

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => any::<u64>().prop_map(|n| n.to_string()),
            4 => (0u64..1000).prop_map(|n| n.to_string()),
            4 => select(&[
                "18446744073709551615", "18446744073709551616", "-1", "-0", "0", "1.0", "1e3",
                "2.5", "-9223372036854775808", "null", "true", "false", "\"12\"", "\"\u{a7}\"",
                "[]", "{}",
            ][..]).prop_map(String::from),
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        leaf().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                3 => prop::collection::vec((select(KEYS), inner.clone()), 0..7).prop_map(object),
                1 => prop::collection::vec(inner, 0..3).prop_map(|a| format!("[{}]", a.join(", "))),
            ]
        })
    }

    fn object(members: Vec<(&str, String)>) -> String {
        let members: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// A usage member shaped as the families' are, with keys on their paths often repeated.
    fn usage() -> impl Strategy<Value = String> {
        let inner = prop::collection::vec(
            (
                select(
                    &[
                        "cached_tokens",
                        "reasoning_tokens",
                        "ephemeral_1h_input_tokens",
                        "x",
                    ][..],
                ),
                leaf(),
            ),
            0..4,
        )
        .prop_map(object);
        prop::collection::vec((select(KEYS), prop_oneof![3 => leaf(), 2 => inner]), 0..8)
            .prop_map(object)
    }

    fn answer() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![3 => usage(), 1 => value()];
        let object = prop::collection::vec((select(MEMBERS), member), 0..5).prop_map(|m| {
            let members: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
            format!("{{ {} }}", members.join(" ,"))
        });
        // A stream of answers as one array, with other values among them.
        let stream = prop::collection::vec(prop_oneof![3 => object.clone(), 1 => value()], 0..4)
            .prop_map(|a| format!("[{}]", a.join(",\r\n")));
        (
            prop_oneof![4 => object, 2 => stream, 1 => value()],
            select(&["", "", "", "\n", "x", "}", "{}"][..]),
            any::<bool>(),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(text, tail, break_utf8, cut, cutting)| {
                let mut bytes = format!("{text}{tail}").into_bytes();
                if break_utf8 && let Some(i) = bytes.iter().position(|b| *b == 0xC2) {
                    bytes[i] = 0xFF;
                }
                if cutting && !bytes.is_empty() {
                    bytes.truncate(cut.index(bytes.len()));
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Billing rests on this: the usage read from an answer without building it is the
        /// usage a full parse reads, for every family, every body (JSON or not) and every
        /// value at or around a path a family reads.
        #[test]
        fn counts_read_as_the_parsed_answer(body in answer()) {
            let parsed = serde_json::from_slice::<Value>(&body);
            // The one difference `Counts::read` states: a number out of `f64`'s range.
            prop_assume!(!parsed
                .as_ref()
                .is_err_and(|e| e.to_string().starts_with("number out of range")));
            let parsed = parsed.ok();
            for api in ApiFamily::ALL {
                let wire = api.wire();
                let counts = Counts::read(&body, wire.usage_member(), wire.usage_paths());
                prop_assert_eq!(parsed.is_some(), counts.is_some());
                if let (Some(v), Some(counts)) = (&parsed, counts) {
                    prop_assert_eq!(
                        wire.json_usage(v),
                        wire.usage_of(counts.as_ref().map(|c| c as &dyn Tree)),
                        "{:?}", api
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Wherever the walk reads an answer at all, it reads what serde_json's visitors read:
        /// the same counts, the same refusals.
        #[test]
        fn the_walk_reads_as_serde_json(body in answer()) {
            prop_assume!(std::str::from_utf8(&body).is_ok());
            for api in ApiFamily::ALL {
                let wire = api.wire();
                let (member, paths) = (wire.usage_member(), wire.usage_paths());
                if let Some(walked) = walk(&body, member, paths) {
                    prop_assert_eq!(Some(walked), read_serde(&body, member, paths), "{:?}", api);
                }
            }
        }
    }

    /// Answers as each family sends them: the walk reads them all (serde_json is not asked),
    /// as serde_json does.
    #[test]
    fn the_walk_reads_the_answers_providers_send() {
        let answers: [(ApiFamily, &[u8], Usage); 4] = [
            (
                ApiFamily::Openai,
                br#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Line one\nsaid \"hi\" \u00e9\ud83d\ude00 \/","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":6,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":4,"cache_write_tokens":5,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2,"accepted_prediction_tokens":0}},"system_fingerprint":"fp_1"}"#,
                Usage { input_tokens: 12, output_tokens: 6, cached_tokens: 4, cache_write_tokens: 5, reasoning_tokens: 2, ..Usage::default() },
            ),
            (
                ApiFamily::Openai,
                br#"{"id":"resp_1","object":"response","status":"completed","temperature":1.0,"output":[{"type":"message","content":[{"type":"output_text","text":"Hi","annotations":[]}]}],"usage":{"input_tokens":30,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":20},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":39}}"#,
                Usage { input_tokens: 30, output_tokens: 9, cache_write_tokens: 20, ..Usage::default() },
            ),
            (
                ApiFamily::Anthropic,
                br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello\n\tthere"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":3,"cache_creation":{"ephemeral_5m_input_tokens":2,"ephemeral_1h_input_tokens":3},"output_tokens":7,"service_tier":"standard"}}"#,
                Usage { input_tokens: 18, output_tokens: 7, cached_tokens: 3, cache_write_tokens: 5, cache_write_1h_tokens: 3, ..Usage::default() },
            ),
            (
                ApiFamily::Gemini,
                b"{\n  \"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}], \"role\": \"model\"}, \"finishReason\": \"STOP\", \"avgLogprobs\": -0.125e-1}],\n  \"usageMetadata\": {\"promptTokenCount\": 4, \"candidatesTokenCount\": 6, \"totalTokenCount\": 12, \"thoughtsTokenCount\": 2, \"promptTokensDetails\": [{\"modality\": \"TEXT\", \"tokenCount\": 4}]},\n  \"modelVersion\": \"gemini-2.5-flash\"\n}\n",
                Usage { input_tokens: 4, output_tokens: 8, reasoning_tokens: 2, ..Usage::default() },
            ),
        ];
        for (api, body, usage) in answers {
            let wire = api.wire();
            let (member, paths) = (wire.usage_member(), wire.usage_paths());
            let walked = walk(body, member, paths).expect("the walk reads a provider's answer");
            assert_eq!(Some(&walked), read_serde(body, member, paths).as_ref());
            assert_eq!(
                wire.usage_of(walked.as_ref().map(|c| c as &dyn Tree)),
                Some(usage)
            );
        }
    }

    /// A repeated member replaces all an earlier one held, at every depth, in the walk too.
    #[test]
    fn the_walk_reads_repeated_members_as_serde_json() {
        let wire = ApiFamily::Openai.wire();
        let (member, paths) = (wire.usage_member(), wire.usage_paths());
        for body in [
            &br#"{"usage":{"input_tokens_details":{"cached_tokens":1},"input_tokens_details":{"x":2}}}"#[..],
            br#"{"usage":{"input_tokens_details":{"cached_tokens":1},"input_tokens_details":null}}"#,
            br#"{"usage":{"input_tokens":1,"input_tokens":"1"}}"#,
            br#"{"usage":{"input_tokens":1},"usage":null}"#,
            br#"[{"usage":{"input_tokens":1}},{"usage":{"output_tokens":2}},{"id":3}]"#,
        ] {
            let walked = walk(body, member, paths);
            assert!(walked.is_some(), "{}", String::from_utf8_lossy(body));
            assert_eq!(walked, read_serde(body, member, paths), "{}", String::from_utf8_lossy(body));
        }
    }

    /// What the walk leaves to serde_json, and what it refuses that serde_json's skipping
    /// takes: each still reads as serde_json reads it.
    #[test]
    fn the_walk_hands_over_what_it_does_not_read_itself() {
        let wire = ApiFamily::Openai.wire();
        let (member, paths) = (wire.usage_member(), wire.usage_paths());
        for body in [
            // A name with an escape may spell a name read.
            &br#"{"us\u0061ge":{"prompt_tokens":3}}"#[..],
            br#"{"usage":{"pr\u006fmpt_tokens":3}}"#,
            // Numbers serde_json parses there, and could refuse.
            br#"{"usage":{"prompt_tokens":1.0}}"#,
            br#"{"usage":{"prompt_tokens":1e400}}"#,
            br#"{"usage":{"prompt_tokens":-1}}"#,
            br#"{"usage":{"prompt_tokens":18446744073709551615}}"#,
            b"[1e400]",
            b"-0",
            // serde_json skips a lone surrogate where it does not read; the walk refuses it.
            br#"{"id":"\ud800","usage":{"prompt_tokens":3}}"#,
            // Nesting past serde_json's limit, which its skipping does not have.
            &[
                &b"{\"x\":"[..],
                &[b'['; 200],
                &[b']'; 200],
                b",\"usage\":{}}",
            ]
            .concat(),
        ] {
            assert_eq!(
                walk(body, member, paths),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(
                Counts::read(body, member, paths),
                read_serde(body, member, paths),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(
            Counts::read(
                br#"{"id":"\ud800","usage":{"prompt_tokens":3}}"#,
                member,
                paths
            )
            .is_some_and(|c| c.is_some())
        );
    }

    #[test]
    fn counts_read_the_last_of_a_repeated_member_and_nested_paths() {
        let body = br#"{"usage":{"prompt_tokens":1,"completion_tokens":9},"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2},"prompt_tokens_details":{"x":1},"completion_tokens_details":{"reasoning_tokens":3}},"choices":[{"message":{"content":"{\"usage\":7}"}}]}"#;
        let wire = ApiFamily::Openai.wire();
        let counts = Counts::read(body, wire.usage_member(), wire.usage_paths()).unwrap();
        assert_eq!(
            wire.usage_of(counts.as_ref().map(|c| c as &dyn Tree)),
            Some(Usage {
                input_tokens: 5,
                reasoning_tokens: 3,
                ..Usage::default()
            })
        );
    }

    #[test]
    fn a_stream_as_one_array_counts_its_last_answer_with_usage() {
        let body = br#"[{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1}},
{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"thoughtsTokenCount":2}},
{"candidates":[]}, 7, [{"usageMetadata":{"promptTokenCount":99}}]]"#;
        let wire = ApiFamily::Gemini.wire();
        let counts = Counts::read(body, wire.usage_member(), wire.usage_paths()).unwrap();
        assert_eq!(
            wire.usage_of(counts.as_ref().map(|c| c as &dyn Tree)),
            Some(Usage {
                input_tokens: 4,
                output_tokens: 8,
                reasoning_tokens: 2,
                ..Usage::default()
            })
        );
    }

    /// The stated difference from a full parse: a number out of `f64`'s range is skipped in a
    /// member not read; where it is read (or is the whole answer), the full parse decides.
    #[test]
    fn a_number_out_of_range_is_skipped_only_where_it_is_not_read() {
        let wire = ApiFamily::Openai.wire();
        let read = |body: &[u8]| {
            Counts::read(body, wire.usage_member(), wire.usage_paths())
                .map(|c| wire.usage_of(c.as_ref().map(|c| c as &dyn Tree)))
        };
        assert_eq!(
            read(br#"{"created":1e400,"usage":{"prompt_tokens":3}}"#),
            Some(Some(Usage {
                input_tokens: 3,
                ..Usage::default()
            }))
        );
        assert_eq!(read(br#"{"usage":{"prompt_tokens":1e400}}"#), None);
        assert_eq!(read(b"1e400"), None);
        assert_eq!(read(b"[1e400]"), None);
    }

    #[test]
    fn an_answer_that_is_not_json_has_no_counts() {
        let wire = ApiFamily::Anthropic.wire();
        for body in [
            &b"{\"usage\":{}"[..],
            b"{\"usage\":{}} x",
            b"{\"a\":\"\xff\"}",
            b"",
        ] {
            assert!(Counts::read(body, wire.usage_member(), wire.usage_paths()).is_none());
        }
        let none = Counts::read(b"[1]", wire.usage_member(), wire.usage_paths());
        assert!(matches!(none, Some(None)));
    }
}
