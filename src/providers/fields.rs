//! Reading the numbers till limits out of a parsed JSON body: output ceilings, choice counts
//! and the images a prompt carries, in whichever of its spellings a family uses. Shared by the
//! family modules; pure functions whose errors are the messages of a 400.

use serde_json::{Map, Value};

/// The most choices (`n`, `best_of`, `candidateCount`) a request may ask for.
pub const MAX_CHOICES: u64 = 128;

/// The largest output ceiling a request may name: 2³⁰ tokens, thousands of times any model's.
/// Past it a ceiling is refused rather than reserved, so no product of ceilings, choices and
/// prompts comes near the end of a `u64` (2³⁰ × 128 × 2,048 is 2⁴⁸).
pub const MAX_CEILING: u64 = 1 << 30;

pub(crate) fn max_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The largest of `fields` that are set; each must be a whole number from 1 (or null). A
/// ceiling of 0 is refused: Gemini's API reads 0 as unset (its default ceiling), so a 0 that
/// till reserved nothing for could be a ceiling of thousands upstream.
pub(crate) fn largest(map: &Map<String, Value>, fields: &[&str]) -> Result<Option<u64>, String> {
    let mut out = None;
    for f in fields {
        match map.get(*f) {
            None | Some(Value::Null) => {}
            Some(v) => {
                let n = v
                    .as_u64()
                    .filter(|n| (1..=MAX_CEILING).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "`{f}` must be a whole number of tokens from 1 to {MAX_CEILING}, not {v}"
                        )
                    })?;
                out = max_opt(out, Some(n));
            }
        }
    }
    Ok(out)
}

/// How many completions `fields` ask for (1 when none is set).
pub(crate) fn choices(map: &Map<String, Value>, fields: &[&str]) -> Result<u64, String> {
    let mut n = 1;
    for f in fields {
        match map.get(*f) {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(k @ 1..=MAX_CHOICES) => n = n.max(k),
                _ => {
                    return Err(format!(
                        "`{f}` must be a whole number from 1 to {MAX_CHOICES}, not {v}"
                    ));
                }
            },
        }
    }
    Ok(n)
}

/// The values of `map`'s members named `name` in any letter case: a part is counted as a
/// case-folding parser (a Go server behind an OpenAI-compatible URL) would read it.
pub(crate) fn named<'a>(
    map: &'a Map<String, Value>,
    name: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    map.iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Whether an object of the body is a part of some kind (an image, a document).
pub(crate) type IsPart = fn(&Map<String, Value>) -> bool;

/// How many objects in `map`, at any depth, `is_part` says yes to (the images of a prompt:
/// message parts, tool results, whatever nests them). Depth is bounded by the parse.
pub(crate) fn count_parts(map: &Map<String, Value>, is_part: IsPart) -> u64 {
    let [n] = count_kinds(map, &[is_part]);
    n
}

/// [`count_parts`] for several kinds of part at once, in one walk of the body.
pub(crate) fn count_kinds<const N: usize>(
    map: &Map<String, Value>,
    kinds: &[IsPart; N],
) -> [u64; N] {
    fn object<const N: usize>(o: &Map<String, Value>, kinds: &[IsPart; N], counts: &mut [u64; N]) {
        for (count, is_part) in counts.iter_mut().zip(kinds) {
            *count += u64::from(is_part(o));
        }
        o.values().for_each(|v| value(v, kinds, counts));
    }
    fn value<const N: usize>(v: &Value, kinds: &[IsPart; N], counts: &mut [u64; N]) {
        match v {
            Value::Object(o) => object(o, kinds, counts),
            Value::Array(a) => a.iter().for_each(|v| value(v, kinds, counts)),
            _ => {}
        }
    }
    let mut counts = [0; N];
    object(map, kinds, &mut counts);
    counts
}
