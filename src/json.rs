//! The one parse of a request body: serde_json's own `Value`, exactly as serde_json builds it
//! (the last of a repeated key wins), that also says whether any object, at any depth,
//! repeated a key.
//!
//! A body without a repeated key reads the same to every conforming JSON parser (RFC 8259
//! leaves only repeated names to the parser's choice; serde_json refuses what else could
//! differ: invalid UTF-8, lone surrogates, numbers out of range, nesting past 128), so it may
//! go upstream as it came when till has nothing to change in it. A body with one is forwarded
//! as this parse, re-serialised, as every body used to be.
//!
//! Coding agents send bodies of a megabyte and more, nearly all of it string content full of
//! `\n` and `\"`. serde_json scans strings eight bytes at a time and validates UTF-8 string
//! by string; [`parse`] validates the whole body's UTF-8 once, finds the end of each stretch
//! of string sixteen bytes at a time and builds the same `Value`. It accepts exactly
//! what serde_json accepts and builds exactly what serde_json builds: [`parse_reference`] is
//! serde_json itself, which the tests and the `json` fuzz target hold it to, and which reads
//! every body the fast parse refuses, so an error is serde_json's own error and a body the fast
//! parse were stricter about would still be read.
//!
//! `Walk` is the same checks over JSON text that build nothing, for a reader that wants a
//! few members of a document (the meter's read of an answer's usage). It knows nothing of
//! till, so it sits below both the proxy and the providers.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `body` as one JSON value; the flag says whether an object repeated a key.
pub fn parse(body: &[u8]) -> Result<(Value, bool), serde_json::Error> {
    match fast(body, &[]) {
        Some(parsed) => Ok((parsed.value, parsed.repeated)),
        None => parse_reference(body),
    }
}

/// A parse for deciding on, not for forwarding: every string that is the value of a field
/// named in `free_text` and is at least [`SKIM_FROM`] bytes long is validated exactly as
/// [`parse`] validates it, but left out of the value (an empty string stands in for it).
/// What it refuses, and every other part of the value, is what [`parse`] gives.
pub fn skim(body: &[u8], free_text: &[&str]) -> Result<Skimmed, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => skim_text(text, free_text),
        // serde_json's own error.
        Err(_) => parse_reference(body).map(|(value, repeated)| Skimmed {
            size: size_of(&value),
            left_out: 0,
            value,
            repeated,
            skimmed: false,
        }),
    }
}

/// [`skim`] of a body already known to be UTF-8.
pub fn skim_text(body: &str, free_text: &[&str]) -> Result<Skimmed, serde_json::Error> {
    skim_text_within(body, free_text, usize::MAX)
        .map(|skimmed| skimmed.expect("no value takes more than usize::MAX bytes"))
}

/// [`skim_text`], given up (`Ok(None)`) as soon as the value would take more than `most` bytes
/// of memory ([`Skimmed::size`]): a body of many small values (a megabyte of `{}` or `0,`)
/// takes twenty and more times its length as a tree, which must not be built whole to find
/// that out.
pub fn skim_text_within(
    body: &str,
    free_text: &[&str],
    most: usize,
) -> Result<Option<Skimmed>, serde_json::Error> {
    let mut over = false;
    match fast_text(body, free_text, most, &mut over) {
        Some(parsed) => Ok(Some(parsed)),
        None if over => Ok(None),
        None => parse_reference(body.as_bytes()).map(|(value, repeated)| {
            let size = size_of(&value);
            (size <= most).then_some(Skimmed {
                value,
                repeated,
                skimmed: false,
                size,
                left_out: 0,
            })
        }),
    }
}

/// What a value is taken to hold of the heap, in bytes: an object's first B-tree node
/// (eleven members) and a share of one for each member after, an array's elements at one and
/// a half times their size (its buffer grows by doubling), and every string at its length, at
/// least an allocator's smallest chunk. An estimate on the high side of what glibc's malloc
/// gives serde_json's `Value` on x86_64, for bounding it, not for accounting to the byte.
pub fn size_of(value: &Value) -> usize {
    match value {
        Value::String(s) => string_size(s.len()),
        Value::Array(a) => a.iter().map(|v| ARRAY_ELEMENT + size_of(v)).sum(),
        Value::Object(m) => {
            let members: usize = m
                .iter()
                .map(|(k, v)| OBJECT_MEMBER + string_size(k.len()) + size_of(v))
                .sum();
            if m.is_empty() { 0 } else { OBJECT + members }
        }
        _ => 0,
    }
}

/// An object's first node, beyond what its members take ([`size_of`]).
const OBJECT: usize = 640;
/// A member's share of its object's nodes: a node holds eleven, and once an object has more
/// its nodes are split half full, with internal nodes above them (an array of twelve-member
/// objects measured 1.35 times what 56 bytes a member said).
const OBJECT_MEMBER: usize = 112;
/// An array element's share of its array's buffer.
const ARRAY_ELEMENT: usize = 48;

/// A string's heap bytes: none when empty, else its length and the allocator's overhead, at
/// least its smallest chunk.
fn string_size(len: usize) -> usize {
    if len == 0 { 0 } else { (len + 8).max(32) }
}

/// A body's [`skim`].
#[derive(Debug, PartialEq)]
pub struct Skimmed {
    pub value: Value,
    /// Some object repeated a key.
    pub repeated: bool,
    /// Some string was left out: the value is not the body, and must not be forwarded.
    pub skimmed: bool,
    /// The memory the value takes, as [`size_of`] tells it.
    pub size: usize,
    /// What the strings left out would take in a whole parse, at most (their length in the
    /// body, escapes and all).
    pub left_out: usize,
}

/// Whether `skimmed` is `whole` but for strings of `free_text` fields that a [`skim`] left out
/// (an empty string in their place): what a skim promises, for its tests and fuzz target.
/// Sets `left_out` when it finds one.
pub fn differs_only_by_skim(
    skimmed: &Value,
    whole: &Value,
    free_text: &[&str],
    left_out: &mut bool,
) -> bool {
    fn within(s: &Value, w: &Value, free: &[&str], field: bool, left_out: &mut bool) -> bool {
        match (s, w) {
            (Value::String(s), Value::String(w)) if field && s.is_empty() && !w.is_empty() => {
                *left_out = true;
                true
            }
            (Value::Object(s), Value::Object(w)) => {
                s.len() == w.len()
                    && s.iter().zip(w).all(|((ks, vs), (kw, vw))| {
                        ks == kw && within(vs, vw, free, free.contains(&ks.as_str()), left_out)
                    })
            }
            (Value::Array(s), Value::Array(w)) => {
                s.len() == w.len()
                    && s.iter()
                        .zip(w)
                        .all(|(vs, vw)| within(vs, vw, free, false, left_out))
            }
            _ => s == w,
        }
    }
    within(skimmed, whole, free_text, false, left_out)
}

/// Free-text strings this long or longer are left out of a [`skim`].
pub const SKIM_FROM: usize = 256;

/// The same parse by serde_json's own deserializer: the reference the fast parse is held to,
/// and the reader of whatever the fast parse refuses.
pub fn parse_reference(body: &[u8]) -> Result<(Value, bool), serde_json::Error> {
    let repeated = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Seed(&repeated).deserialize(&mut de)?;
    de.end()?;
    Ok((value, repeated.get()))
}

/// serde_json's nesting limit: it refuses the 128th array or object opened inside others.
const MAX_DEPTH: u32 = 127;

fn fast(body: &[u8], free_text: &[&str]) -> Option<Skimmed> {
    fast_text(
        std::str::from_utf8(body).ok()?,
        free_text,
        usize::MAX,
        &mut false,
    )
}

/// The fast parse; `None` when it refuses the text, or (`over` set) when the value would take
/// more than `most` bytes.
fn fast_text(text: &str, free_text: &[&str], most: usize, over: &mut bool) -> Option<Skimmed> {
    let mut p = Fast {
        text,
        w: Walk::new(text.as_bytes()),
        repeated: false,
        scratch: String::new(),
        free_text,
        skimmed: false,
        size: 0,
        most,
        left_out: 0,
    };
    let value = p.value(false);
    *over = p.size > most;
    let value = value?;
    p.w.end().then_some(Skimmed {
        value,
        repeated: p.repeated,
        skimmed: p.skimmed,
        size: p.size,
        left_out: p.left_out,
    })
}

struct Fast<'a> {
    /// The body, known to be UTF-8, for slicing out string content.
    text: &'a str,
    /// The cursor over the same body, and the checks of its structure.
    w: Walk<'a>,
    repeated: bool,
    /// Where strings with escapes are unescaped, kept from string to string.
    scratch: String,
    /// Fields whose long string values a skim leaves out.
    free_text: &'a [&'a str],
    skimmed: bool,
    /// What the value built so far takes ([`size_of`]), and the most it may.
    size: usize,
    most: usize,
    /// What the strings left out would take ([`Skimmed::left_out`]).
    left_out: usize,
}

impl Fast<'_> {
    /// Counts `bytes` more of the value; `None` once it passes the most it may take.
    fn grow(&mut self, bytes: usize) -> Option<()> {
        self.size = self.size.saturating_add(bytes);
        (self.size <= self.most).then_some(())
    }

    /// One value; `free` says it is a free-text field's, which a skim may leave out.
    fn value(&mut self, free: bool) -> Option<Value> {
        match self.w.peek()? {
            b'"' => {
                self.w.at += 1;
                let s = if free {
                    self.free_string()?
                } else {
                    self.string()?
                };
                self.grow(string_size(s.len()))?;
                Some(Value::String(s))
            }
            b'{' => self.object(),
            b'[' => self.array(),
            b't' => self.literal(b"true", Value::Bool(true)),
            b'f' => self.literal(b"false", Value::Bool(false)),
            b'n' => self.literal(b"null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Option<Value> {
        let end = self.w.at + word.len();
        (self.w.bytes.get(self.w.at..end)? == word).then(|| {
            self.w.at = end;
            v
        })
    }

    fn array(&mut self) -> Option<Value> {
        let mut out = Vec::new();
        if self.w.open(b']')? {
            loop {
                self.grow(ARRAY_ELEMENT)?;
                out.push(self.value(false)?);
                if !self.w.next(b']')? {
                    break;
                }
            }
        }
        Some(Value::Array(out))
    }

    fn object(&mut self) -> Option<Value> {
        let mut out = Map::new();
        if self.w.open(b'}')? {
            self.grow(OBJECT)?;
            loop {
                if self.w.peek()? != b'"' {
                    return None;
                }
                self.w.at += 1;
                let key = self.string()?;
                self.grow(OBJECT_MEMBER + string_size(key.len()))?;
                if self.w.peek()? != b':' {
                    return None;
                }
                self.w.at += 1;
                let free = self.free_text.contains(&key.as_str());
                let value = self.value(free)?;
                if out.insert(key, value).is_some() {
                    self.repeated = true;
                }
                if !self.w.next(b'}')? {
                    break;
                }
            }
        }
        Some(Value::Object(out))
    }

    /// A string's content after its opening quote, unescaped; the cursor ends past the
    /// closing quote. A string without escapes is copied once from the body; one with escapes
    /// is unescaped into the reused scratch first, so it is allocated once at its length.
    fn string(&mut self) -> Option<String> {
        let mut from = self.w.at;
        let mut escaped = false;
        self.scratch.clear();
        loop {
            let stop = special(self.w.bytes, from)?;
            // `"` and `\` are ASCII, so both ends of the stretch are character boundaries.
            let stretch = &self.text[from..stop];
            self.w.at = stop + 1;
            match self.w.bytes[stop] {
                b'"' if !escaped => return Some(stretch.to_owned()),
                b'"' => {
                    self.scratch.push_str(stretch);
                    return Some(self.scratch.as_str().to_owned());
                }
                b'\\' => {
                    escaped = true;
                    self.scratch.push_str(stretch);
                    let c = self.escape()?;
                    self.scratch.push(c);
                    from = self.w.at;
                }
                // A raw control character, which JSON refuses inside strings.
                _ => return None,
            }
        }
    }

    /// A free-text string: validated to its end; left out if it is [`SKIM_FROM`] bytes or
    /// longer, else read again by [`Self::string`].
    fn free_string(&mut self) -> Option<String> {
        let start = self.w.at;
        let end = skip_string(self.w.bytes, start)?;
        if end - start >= SKIM_FROM {
            self.w.at = end + 1;
            self.skimmed = true;
            self.left_out = self.left_out.saturating_add(string_size(end - start));
            return Some(String::new());
        }
        self.string()
    }

    /// One escape after its backslash, with serde_json's rules: surrogates only in pairs.
    fn escape(&mut self) -> Option<char> {
        let c = *self.w.bytes.get(self.w.at)?;
        self.w.at += 1;
        Some(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (c, end) = unicode_escape(self.w.bytes, self.w.at)?;
                self.w.at = end;
                c
            }
            _ => return None,
        })
    }

    /// A number with JSON's grammar. Plain non-negative integers of up to 18 digits are read
    /// here; every other number is read by serde_json from its own text, so floats, negative
    /// zero and out-of-range values come out (or are refused) exactly as serde_json does.
    fn number(&mut self) -> Option<Value> {
        let start = self.w.at;
        let (end, integer) = number_end(self.w.bytes, start)?;
        self.w.at = end;
        let token = &self.text[start..end];
        if integer && self.w.bytes[start] != b'-' && token.len() <= 18 {
            return Some(Value::Number(token.parse::<u64>().ok()?.into()));
        }
        serde_json::from_str(token).ok()
    }
}

/// The end of the number at `start` by JSON's grammar (as serde_json reads it, without
/// checking its range), and whether it is an integer: no fraction, no exponent.
fn number_end(b: &[u8], start: usize) -> Option<(usize, bool)> {
    let digits = |at: &mut usize| {
        let from = *at;
        while b.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        *at - from
    };
    let mut at = start;
    if b.get(at) == Some(&b'-') {
        at += 1;
    }
    match b.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => {
            digits(&mut at);
        }
        _ => return None,
    }
    let mut integer = true;
    if b.get(at) == Some(&b'.') {
        at += 1;
        integer = false;
        if digits(&mut at) == 0 {
            return None;
        }
    }
    if let Some(b'e' | b'E') = b.get(at) {
        at += 1;
        integer = false;
        if let Some(b'+' | b'-') = b.get(at) {
            at += 1;
        }
        if digits(&mut at) == 0 {
            return None;
        }
    }
    Some((at, integer))
}

/// A scalar a [`Walk`] passed.
pub(crate) enum Scalar<'a> {
    /// A number's text, and whether it is an integer (no fraction, no exponent).
    Number {
        text: &'a [u8],
        integer: bool,
    },
    Null,
    /// A string, `true` or `false`.
    Other,
}

/// A walk over JSON text that checks it and builds nothing, for a reader that wants a few
/// members of a document and skips the rest (the meter's usage counts). It passes nothing
/// serde_json's deserializer would refuse where a reader skips: strings are checked as
/// [`Fast::string`] reads them (stricter than serde_json's skipping, which lets a lone
/// surrogate escape through), numbers by JSON's grammar (as serde_json skips them, without
/// their range) and nesting to serde_json's limit (which its skipping does not have). A reader
/// whose walk refuses hands the document to serde_json, which then decides.
pub(crate) struct Walk<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: u32,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Walk {
            bytes,
            at: 0,
            depth: 0,
        }
    }

    /// The next byte after whitespace, not taken.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
        self.bytes.get(self.at).copied()
    }

    /// Whether nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Opens the array or object whose bracket [`Self::peek`] saw: `true` when an element or
    /// member follows, `false` when `close` does (taken; the container is left).
    pub(crate) fn open(&mut self, close: u8) -> Option<bool> {
        self.depth += 1;
        self.at += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        if self.peek()? == close {
            self.at += 1;
            self.depth -= 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an element or member: `true` when a comma (taken) says another follows, `false`
    /// when `close` (taken) ends the container.
    pub(crate) fn next(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            c if c == close => {
                self.at += 1;
                self.depth -= 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// An object member's name and its colon: the name's text as written, escapes and all.
    pub(crate) fn key(&mut self) -> Option<&'a [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let (from, to) = self.string_at()?;
        if self.peek()? != b':' {
            return None;
        }
        self.at += 1;
        Some(&self.bytes[from..to])
    }

    /// The string [`Self::peek`] saw, checked: where its content starts and its closing quote.
    fn string_at(&mut self) -> Option<(usize, usize)> {
        let from = self.at + 1;
        let stop = special(self.bytes, from)?;
        let end = match self.bytes[stop] {
            b'"' => stop,
            b'\\' => skip_string(self.bytes, from)?,
            _ => return None,
        };
        self.at = end + 1;
        Some((from, end))
    }

    /// The scalar [`Self::peek`] saw, checked.
    pub(crate) fn scalar(&mut self) -> Option<Scalar<'a>> {
        let (word, scalar): (&[u8], _) = match self.peek()? {
            b'"' => return self.string_at().map(|_| Scalar::Other),
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                let (end, integer) = number_end(self.bytes, start)?;
                self.at = end;
                return Some(Scalar::Number {
                    text: &self.bytes[start..end],
                    integer,
                });
            }
            b't' => (b"true", Scalar::Other),
            b'f' => (b"false", Scalar::Other),
            b'n' => (b"null", Scalar::Null),
            _ => return None,
        };
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            scalar
        })
    }

    /// Skips the value [`Self::peek`] sees, checking it.
    pub(crate) fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => {
                if self.open(b'}')? {
                    loop {
                        self.key()?;
                        self.skip()?;
                        if !self.next(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if self.open(b']')? {
                    loop {
                        self.skip()?;
                        if !self.next(b']')? {
                            break;
                        }
                    }
                }
            }
            _ => {
                self.scalar()?;
            }
        }
        Some(())
    }
}

/// The position of the first `"`, `\` or control character at or after `from`: what ends a
/// stretch of string content. Sixteen bytes at a time.
fn special(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 16) {
        let mask = stops16(chunk.try_into().ok()?);
        if mask != 0 {
            return Some(from + mask.trailing_zeros() as usize);
        }
        from += 16;
    }
    let tail = bytes.get(from..)?;
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|i| from + i)
}

/// Validates string content from `from` (just after the opening quote) as [`Fast::string`]
/// would read it, without unescaping it, and returns the index of the closing quote. Sixty-four
/// bytes at a time: which bytes are escaped follows from the runs of backslashes (an odd run
/// escapes the byte after it; the carry arithmetic is simdjson's). An escaped `"`, `\` or `n`
/// is valid and known from the block's masks; any other escaped byte gets one table look-up,
/// and `\u` escapes are read by the same rules as [`Fast::escape`].
///
/// Measured (`benches/body.rs`, the 1 MB conversation of `scripts/bench_nginx.py`): 187 µs
/// with a block-wide check of the escaped bytes, 161 µs with the look-up per escape. Reading
/// the blocks 32 bytes at a time with AVX2 took it to 145 µs, but was no faster end to end
/// through `till serve` in four same-round comparisons (slower in three), so it is not here.
/// On a later machine the look-up per escape measured 292.8 µs, and leaving the escaped `"`,
/// `\` and `n` out of it 151.6 µs: the loop over escapes, with a branch no predictor learns,
/// was half the skim. AVX2 then took it to 135.5 µs (−11 %), again too little to be worth
/// a second, run-time-chosen copy of the scan on a security boundary.
fn skip_string(b: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, just checked.
        return unsafe { skip_string_avx2(b, from) };
    }
    skip_string_by(b, from, masks64)
}

/// [`skip_string`] with the masks of each block taken 32 bytes at a time: half the
/// instructions of SSE2's sixteen, on the strings that are nearly all of a large body.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn skip_string_avx2(b: &[u8], from: usize) -> Option<usize> {
    skip_string_by(b, from, |block| masks64_avx2(block))
}

/// The scan of [`skip_string`], with `masks` for each 64-byte block. Inlined into each
/// caller, so the masks are computed with that caller's instructions.
#[inline(always)]
fn skip_string_by(b: &[u8], from: usize, masks: impl Fn(&[u8; 64]) -> Masks) -> Option<usize> {
    let mut scan = Scan::default();
    let mut at = from;
    while let Some(block) = b.get(at..at + 64) {
        let block: &[u8; 64] = block.try_into().ok()?;
        if let Some(end) = scan.block(b, at, masks(block))? {
            return Some(end);
        }
        at += 64;
    }
    if at >= b.len() {
        return None;
    }
    // The last bytes, padded with spaces (which end nothing and are not escapes).
    let mut padded = [b' '; 64];
    padded[..b.len() - at].copy_from_slice(&b[at..]);
    let end = scan.block(b, at, masks(&padded))??;
    (end < b.len()).then_some(end)
}

/// What one 64-byte block of a string tells the next.
#[derive(Default)]
struct Scan {
    /// The previous block ended in an odd run of backslashes: this block's first byte is
    /// escaped.
    carry: u64,
    /// Bytes before here belong to a `\u` escape already read (with its pair's second half).
    read_to: usize,
}

impl Scan {
    /// The block at `at` with its [`Masks`]: `None` when the string is invalid, `Some(Some(i))`
    /// when it ends with the quote at `i`, `Some(None)` when it goes on past the block.
    /// Inlined: called once per 64 bytes.
    #[inline(always)]
    fn block(&mut self, b: &[u8], at: usize, masks: Masks) -> Option<Option<usize>> {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let Masks {
            quote,
            backslash,
            control,
            n,
        } = masks;
        let starts = backslash & !(backslash << 1);
        let even_starts_mask = EVEN ^ self.carry;
        let even_carries = backslash.wrapping_add(starts & even_starts_mask);
        let (mut odd_carries, ends_odd) = backslash.overflowing_add(starts & !even_starts_mask);
        odd_carries |= self.carry;
        self.carry = u64::from(ends_odd);
        let escaped = (even_carries & !backslash & !EVEN) | (odd_carries & !backslash & EVEN);
        let end = quote & !escaped;
        let before_end = if end == 0 {
            u64::MAX
        } else {
            (1u64 << end.trailing_zeros()) - 1
        };
        if control & before_end != 0 {
            return None;
        }
        // `\"`, `\\` and `\n` (most of a coding agent's escapes) are valid and end nothing:
        // only the other escaped bytes are looked at, one by one.
        let mut e = escaped & before_end & !(quote | backslash | n);
        while e != 0 {
            let i = at + e.trailing_zeros() as usize;
            e &= e - 1;
            // An escaped byte past the body is a padding byte after a last backslash: the
            // string has no end.
            match ESCAPED[usize::from(*b.get(i)?)] {
                SIMPLE => {}
                // The second half of a surrogate pair was read with the first.
                UNICODE if i >= self.read_to => {
                    self.read_to = unicode_escape(b, i + 1)?.1;
                }
                UNICODE => {}
                _ => return None,
            }
        }
        Some((end != 0).then(|| at + end.trailing_zeros() as usize))
    }
}

const SIMPLE: u8 = 1;
const UNICODE: u8 = 2;

/// What each byte is after a backslash: [`SIMPLE`] for `"\/bfnrt`, [`UNICODE`] for `u`, 0 for
/// the bytes JSON refuses there.
static ESCAPED: [u8; 256] = {
    let mut t = [0u8; 256];
    let simple = *b"\"\\/bfnrt";
    let mut i = 0;
    while i < simple.len() {
        t[simple[i] as usize] = SIMPLE;
        i += 1;
    }
    t[b'u' as usize] = UNICODE;
    t
};

/// A `\u` escape whose four hex digits start at `at`, by serde_json's rules: a leading
/// surrogate must be followed by `\u` and a trailing one, a trailing surrogate alone is
/// refused. The character, and the index just past the escape (past the pair).
fn unicode_escape(b: &[u8], at: usize) -> Option<(char, usize)> {
    let n = hex4(b, at)?;
    match n {
        0xD800..=0xDBFF => {
            if b.get(at + 4..at + 6)? != b"\\u" {
                return None;
            }
            let low = hex4(b, at + 6)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return None;
            }
            let c = (((u32::from(n) - 0xD800) << 10) | (u32::from(low) - 0xDC00)) + 0x1_0000;
            Some((char::from_u32(c)?, at + 10))
        }
        0xDC00..=0xDFFF => None,
        _ => Some((char::from_u32(u32::from(n))?, at + 4)),
    }
}

/// Four hex digits at `at`.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let mut n = 0u16;
    for &d in b.get(at..at + 4)? {
        n = n << 4 | u16::from(char::from(d).to_digit(16)? as u8);
    }
    Some(n)
}

/// Which bytes of a 64-byte block are quotes, backslashes, control characters and `n`s.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Masks {
    quote: u64,
    backslash: u64,
    control: u64,
    /// After a backslash, `n` is a newline: the escape a conversation has most of.
    n: u64,
}

fn masks64(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (k, chunk) in block.chunks_exact(16).enumerate() {
        let [q, bs, c, n] = masks16(chunk.try_into().unwrap_or(&[0; 16]));
        m.quote |= u64::from(q) << (16 * k);
        m.backslash |= u64::from(bs) << (16 * k);
        m.control |= u64::from(c) << (16 * k);
        m.n |= u64::from(n) << (16 * k);
    }
    m
}

/// [`masks64`] in two 32-byte halves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn masks64_avx2(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_movemask_epi8,
        _mm256_set1_epi8,
    };
    let half = |v: __m256i| {
        let low = _mm256_set1_epi8(0x1f);
        let bits = |m| u64::from(_mm256_movemask_epi8(m) as u32);
        [
            bits(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8))),
            bits(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8))),
            // Unsigned c <= 0x1f exactly when max(c, 0x1f) == 0x1f.
            bits(_mm256_cmpeq_epi8(_mm256_max_epu8(v, low), low)),
            bits(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'n' as i8))),
        ]
    };
    // SAFETY: the unaligned loads read the two halves of `block`, exactly its 64 bytes.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr().cast()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast()),
        )
    };
    let [q0, b0, c0, n0] = half(lo);
    let [q1, b1, c1, n1] = half(hi);
    Masks {
        quote: q0 | q1 << 32,
        backslash: b0 | b1 << 32,
        control: c0 | c1 << 32,
        n: n0 | n1 << 32,
    }
}

/// A bit for each of the sixteen bytes that is `"`, `\` or below 0x20.
fn stops16(chunk: &[u8; 16]) -> u32 {
    let [q, bs, c, _] = masks16(chunk);
    q | bs | c
}

/// The `"`, `\`, control-character and `n` bits of sixteen bytes: four SSE2 compares.
#[cfg(target_arch = "x86_64")]
fn masks16(chunk: &[u8; 16]) -> [u32; 4] {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 CPU (the compiler enables it for the target), and
    // the unaligned load reads exactly the sixteen bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned c <= 0x1f exactly when max(c, 0x1f) == 0x1f.
        let low = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
        let n = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'n' as i8));
        [
            _mm_movemask_epi8(quote) as u32,
            _mm_movemask_epi8(backslash) as u32,
            _mm_movemask_epi8(control) as u32,
            _mm_movemask_epi8(n) as u32,
        ]
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn masks16(chunk: &[u8; 16]) -> [u32; 4] {
    let mut m = [0u32; 4];
    for (i, &x) in chunk.iter().enumerate() {
        m[0] |= u32::from(x == b'"') << i;
        m[1] |= u32::from(x == b'\\') << i;
        m[2] |= u32::from(x < 0x20) << i;
        m[3] |= u32::from(x == b'n') << i;
    }
    m
}

#[derive(Clone, Copy)]
struct Seed<'a>(&'a Cell<bool>);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if out.insert(key, value).is_some() {
                self.0.set(true);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests;
