//! Tokens: minting, offline attenuation, and the `till_…` text encoding.
//!
//! A [`Token`] is the child key itself. It knows its caveats, its level structure and its
//! final tag; it never holds an intermediate tag (those would let a holder strip caveats),
//! only the *bindings* (hashes of tags) that whoever built it could compute. Checking a
//! token against the mint key is `verify`'s job, not this module's.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use super::caveat::{Caveat, Reader, TRUNCATED, canonicalize, put_varint};
use super::mintkey::{Kid, MintKey, MintKeyError, fill_random};

/// The only token format version this till writes and reads.
pub const VERSION: u8 = 1;
/// Prefix of every encoded token.
pub const PREFIX: &str = "till_";
/// Most caveats one token may carry, over all levels.
pub const MAX_CAVEATS: usize = 128;
/// Most attenuation levels (the minted level included).
pub const MAX_LEVELS: usize = 32;
/// Longest encoded token `decode` will look at.
pub const MAX_ENCODED_LEN: usize = 8192;

pub(crate) const NONCE_LEN: usize = 16;
pub(crate) const TAG_LEN: usize = 32;
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const CRC_LEN: usize = 4;
/// Smallest possible body: header, a zero level count, the tag.
pub(crate) const MIN_BODY_LEN: usize = HEADER_LEN + 1 + TAG_LEN;

/// `SHA256(tag_i)`: the public name of a key at one point of its chain.
///
/// A binding is safe to store and print (it cannot be turned back into the tag); the ledger
/// keys budgets, counters and revocations by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Binding(pub [u8; 32]);

impl Binding {
    pub(crate) fn of_tag(tag: &[u8; TAG_LEN]) -> Binding {
        Binding(Sha256::digest(tag).into())
    }

    /// All 64 hex characters, built on the stack and copied once (`to_string` would grow a
    /// String through the formatter): the proxy makes one for every request it records.
    pub fn hex(&self) -> String {
        let mut buf = [0u8; 64];
        // Neither can fail: the buffer is twice the binding's length, and hex digits are ASCII.
        let _ = hex::encode_to_slice(self.0, &mut buf);
        String::from(std::str::from_utf8(&buf).unwrap_or_default())
    }

    /// The first 12 hex characters, for tables and messages.
    pub fn short(&self) -> String {
        let mut s = String::with_capacity(12);
        self.push_short(&mut s);
        s
    }

    /// [`Binding::short`] added to `out`.
    pub fn push_short(&self, out: &mut String) {
        let mut buf = [0u8; 12];
        // Neither can fail: the buffer is twice the six bytes, and hex digits are ASCII.
        let _ = hex::encode_to_slice(&self.0[..6], &mut buf);
        out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    }

    /// [`Binding::short`] of a binding kept as hex text (the ledger's form): its first 12
    /// characters.
    pub fn short_hex(hex: &str) -> String {
        hex.chars().take(12).collect()
    }
}

impl fmt::Display for Binding {
    /// All 64 hex characters; `{:#}` prints the 12-character short form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.short())
        } else {
            f.write_str(&self.hex())
        }
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Binding({})", self.short())
    }
}

impl FromStr for Binding {
    type Err = String;
    /// Parses the full 64-hex form (upper or lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b)
            .map_err(|_| format!("`{s}` is not a key binding (64 hex characters)"))?;
        Ok(Binding(b))
    }
}

/// One attenuation level: the caveats added by a mint (level 0) or one attenuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// 0 for the minted level, then 1, 2, … for each attenuation.
    pub index: usize,
    /// The caveat indices this level added.
    pub caveats: Range<usize>,
}

/// Why text is not a usable till token. Scanners and the proxy match on the kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a till key (till keys start with `till_`)")]
    NotATillKey,
    #[error("the key's checksum does not match (it was mistyped or cut)")]
    BadChecksum,
    #[error("the key's length is wrong (cut short, or characters added)")]
    Truncated,
    #[error("the key has format version {0}, this till reads version 1; upgrade till")]
    BadVersion(u8),
    #[error("malformed till key: {0}")]
    Malformed(String),
}

/// Why a mint or an attenuation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    #[error("a key needs at least one caveat; till never mints an unrestricted key")]
    NoCaveats,
    #[error("a minted key needs an expiry (an Expires caveat)")]
    NoExpiry,
    #[error("caveat tag {0:#04x} is not one this till understands; it cannot be added")]
    UnknownCaveat(u8),
    #[error("invalid caveat: {0}")]
    Invalid(String),
    #[error("a key may carry at most {MAX_CAVEATS} caveats")]
    TooManyCaveats,
    #[error("a key may be attenuated at most {} times", MAX_LEVELS - 1)]
    TooManyLevels,
    #[error(
        "the key would be {0} characters long, more than the {MAX_ENCODED_LEN} till reads: fewer or shorter patterns"
    )]
    TooLong(usize),
    #[error(transparent)]
    Random(#[from] MintKeyError),
}

/// `token`, unless its text is longer than [`Token::decode`] reads: a key made so would be
/// refused everywhere it went.
fn readable(token: Token) -> Result<Token, MintError> {
    let len = token.encode().len();
    if len > MAX_ENCODED_LEN {
        return Err(MintError::TooLong(len));
    }
    Ok(token)
}

/// A child key: version, kid, nonce, caveats grouped in levels, and the final tag.
///
/// `Debug` never shows the tag; only [`Token::encode`] reveals the bearer secret.
#[derive(Clone)]
pub struct Token {
    pub(crate) version: u8,
    pub(crate) kid: Kid,
    pub(crate) nonce: [u8; NONCE_LEN],
    pub(crate) caveats: Vec<Caveat>,
    /// Bit `i` is set when caveat `i` ends its level (so the last caveat's bit is always
    /// set). A bitmask rather than a list keeps decoding free of one allocation; it fits
    /// because a token has at most 128 caveats.
    pub(crate) level_marks: u128,
    pub(crate) tag: [u8; TAG_LEN],
    /// Bindings the builder of this value could compute, for caveat indices
    /// `known_from..caveats.len()`. A decoded token knows none.
    known_bindings: Vec<Binding>,
    known_from: usize,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.tag.zeroize();
    }
}

impl PartialEq for Token {
    /// Equal when the encoded tokens are equal (what a holder could compute is ignored).
    fn eq(&self, other: &Token) -> bool {
        self.version == other.version
            && self.kid == other.kid
            && self.nonce == other.nonce
            && self.caveats == other.caveats
            && self.level_marks == other.level_marks
            && bool::from(self.tag.ct_eq(&other.tag))
    }
}

impl Eq for Token {}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("version", &self.version)
            .field("kid", &self.kid)
            .field("levels", &self.levels())
            .field("caveats", &self.caveats)
            .field("binding", &self.binding())
            .finish_non_exhaustive()
    }
}

/// The message the chain signs for caveat `i`: a level-end flag, then the caveat's encoding.
///
/// The flag puts level boundaries under the signature. Without it a holder could re-split
/// levels, and because a level ends in the flag, nobody can append to a level that already
/// exists: a budget charged to a level's binding cannot be reset by extending that level.
pub(crate) fn chain_step(
    prev: &[u8; TAG_LEN],
    ends_level: bool,
    caveat: &Caveat,
    buf: &mut Vec<u8>,
) -> [u8; TAG_LEN] {
    buf.clear();
    buf.push(u8::from(ends_level));
    caveat.encode_into(buf);
    let mut mac = Hmac::<Sha256>::new_from_slice(prev).expect("any key length");
    mac.update(buf);
    mac.finalize().into_bytes().into()
}

/// `version ‖ kid ‖ nonce`, the message of `tag0`.
pub(crate) fn header(version: u8, kid: Kid, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = version;
    h[1..5].copy_from_slice(&kid.0);
    h[5..].copy_from_slice(nonce);
    h
}

/// Checks a batch for mint/attenuate and puts it in canonical order.
fn prepare_batch(caveats: Vec<Caveat>) -> Result<Vec<Caveat>, MintError> {
    if caveats.is_empty() {
        return Err(MintError::NoCaveats);
    }
    for c in &caveats {
        if let Caveat::Unknown { tag, .. } = c {
            return Err(MintError::UnknownCaveat(*tag));
        }
    }
    let batch = canonicalize(caveats);
    for c in &batch {
        c.validate().map_err(MintError::Invalid)?;
    }
    Ok(batch)
}

impl Token {
    /// Mints a new key under `mint` with `caveats` as level 0 (sorted into canonical order).
    ///
    /// Refuses an empty batch, a batch without an `Expires`, and unknown caveats.
    pub fn mint(mint: &MintKey, caveats: Vec<Caveat>) -> Result<Token, MintError> {
        let batch = prepare_batch(caveats)?;
        if !batch.iter().any(|c| matches!(c, Caveat::Expires(_))) {
            return Err(MintError::NoExpiry);
        }
        if batch.len() > MAX_CAVEATS {
            return Err(MintError::TooManyCaveats);
        }
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        readable(Token::mint_with_nonce(mint, batch, nonce))
    }

    /// Mint with a given nonce and an already prepared batch (at most [`MAX_CAVEATS`]).
    pub(crate) fn mint_with_nonce(
        mint: &MintKey,
        batch: Vec<Caveat>,
        nonce: [u8; NONCE_LEN],
    ) -> Token {
        let kid = mint.kid();
        let mut tag = mint.tag0(&header(VERSION, kid, &nonce));
        let mut buf = Vec::with_capacity(64);
        let mut known = Vec::with_capacity(batch.len());
        let last = batch.len().saturating_sub(1);
        for (i, c) in batch.iter().enumerate() {
            // Intermediate tags would let a holder strip caveats: wipe each one.
            let next = chain_step(&tag, i == last, c, &mut buf);
            tag.zeroize();
            tag = next;
            known.push(Binding::of_tag(&tag));
        }
        let len = batch.len();
        Token {
            version: VERSION,
            kid,
            nonce,
            caveats: batch,
            level_marks: if len == 0 { 0 } else { 1 << (len - 1) },
            tag,
            known_bindings: known,
            known_from: 0,
        }
    }

    /// A new token with `caveats` appended as a new level, computed offline from this
    /// token's final tag. The result is never wider than `self`.
    pub fn attenuate(&self, caveats: Vec<Caveat>) -> Result<Token, MintError> {
        let batch = prepare_batch(caveats)?;
        if self.caveats.len() + batch.len() > MAX_CAVEATS {
            return Err(MintError::TooManyCaveats);
        }
        if self.level_count() + 1 > MAX_LEVELS {
            return Err(MintError::TooManyLevels);
        }
        let start = self.caveats.len();
        let mut tag = self.tag;
        let mut buf = Vec::with_capacity(64);
        // The holder knows the binding of the level it attenuates (its own key) as well.
        let mut known = Vec::with_capacity(batch.len() + 1);
        let known_from = if start == 0 {
            0
        } else {
            known.push(self.binding());
            start - 1
        };
        let last = batch.len() - 1;
        for (i, c) in batch.iter().enumerate() {
            // Intermediate tags would let a holder strip caveats: wipe each one.
            let next = chain_step(&tag, i == last, c, &mut buf);
            tag.zeroize();
            tag = next;
            known.push(Binding::of_tag(&tag));
        }
        let mut caveats = self.caveats.clone();
        caveats.extend(batch);
        let level_marks = self.level_marks | 1 << (caveats.len() - 1);
        readable(Token {
            version: self.version,
            kid: self.kid,
            nonce: self.nonce,
            caveats,
            level_marks,
            tag,
            known_bindings: known,
            known_from,
        })
    }

    /// Whether caveat `i` is the last of its level.
    pub(crate) fn ends_level(&self, i: usize) -> bool {
        i < 128 && self.level_marks >> i & 1 == 1
    }

    /// How many levels the token has.
    pub fn level_count(&self) -> usize {
        self.level_marks.count_ones() as usize
    }

    /// Exclusive end index of each level, in order.
    pub(crate) fn level_ends(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.caveats.len())
            .filter(|&i| self.ends_level(i))
            .map(|i| i + 1)
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    /// The kid of the mint key this token claims to come from.
    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// Every caveat, level after level.
    pub fn caveats(&self) -> &[Caveat] {
        &self.caveats
    }

    /// The levels: which caveat indices the mint and each attenuation added.
    pub fn levels(&self) -> Vec<Level> {
        let mut start = 0;
        self.level_ends()
            .enumerate()
            .map(|(index, end)| {
                let level = Level {
                    index,
                    caveats: start..end,
                };
                start = end;
                level
            })
            .collect()
    }

    /// The level caveat `i` belongs to.
    pub fn level_of(&self, caveat_index: usize) -> Option<usize> {
        self.level_ends().position(|end| caveat_index < end)
    }

    /// A public name of level `level` that every key narrowed from it shares: SHA-256 of a
    /// label, the header and the caveats up to the end of that level with their level
    /// boundaries. Anyone holding the key or a descendant can compute it without the mint
    /// key; it says nothing of any tag. A revocation by key text records it, so that a key
    /// narrowed from a revoked one can be told revoked offline (`till key show`).
    pub fn lineage(&self, level: usize) -> Option<String> {
        let end = self.level_ends().nth(level)?;
        let mut h = Sha256::new();
        h.update(b"till lineage v1\0");
        h.update(header(self.version, self.kid, &self.nonce));
        let mut buf = Vec::with_capacity(32);
        for (i, c) in self.caveats[..end].iter().enumerate() {
            buf.clear();
            c.encode_into(&mut buf);
            h.update((buf.len() as u32).to_be_bytes());
            h.update(&buf);
            h.update([u8::from(self.ends_level(i))]);
        }
        Some(hex::encode(h.finalize()))
    }

    /// The random nonce the key was minted with, in hex; every key narrowed from it has it.
    pub fn nonce_hex(&self) -> String {
        hex::encode(self.nonce)
    }

    /// This key's identity: `SHA256(final tag)`, the binding of its last level.
    pub fn binding(&self) -> Binding {
        Binding::of_tag(&self.tag)
    }

    /// `binding_i` for each caveat index, where whoever built this value could compute it:
    /// all of them after a mint; after an attenuation, the parent's own binding and the new
    /// level's; only the last one after a decode. The verifier gets all of them
    /// (`Verified::bindings`).
    pub fn bindings(&self) -> Vec<Option<Binding>> {
        let n = self.caveats.len();
        let mut out = vec![None; n];
        for (i, b) in self.known_bindings.iter().enumerate() {
            out[self.known_from + i] = Some(*b);
        }
        if let Some(last) = out.last_mut() {
            *last = Some(self.binding());
        }
        out
    }

    /// The text form: `till_` + base64url(body ‖ crc32(body)), described in the module docs.
    pub fn encode(&self) -> String {
        let mut body =
            Vec::with_capacity(HEADER_LEN + 8 + 16 * self.caveats.len() + TAG_LEN + CRC_LEN);
        body.extend_from_slice(&header(self.version, self.kid, &self.nonce));
        put_varint(&mut body, self.level_count() as u64);
        let mut start = 0;
        for end in self.level_ends() {
            put_varint(&mut body, (end - start) as u64);
            for c in &self.caveats[start..end] {
                c.encode_into(&mut body);
            }
            start = end;
        }
        body.extend_from_slice(&self.tag);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let mut out = String::with_capacity(PREFIX.len() + body.len().div_ceil(3) * 4);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&body, &mut out);
        body.zeroize();
        out
    }

    /// Parses the text form. Checks the checksum and the structure, not the signature.
    /// The text must be exact: callers strip `Bearer ` and surrounding whitespace.
    pub fn decode(text: &str) -> Result<Token, DecodeError> {
        let mut body = decode_checked(text)?;
        let token = parse_body(&body[..body.len() - CRC_LEN]);
        body.zeroize();
        token
    }
}

/// Strips the prefix, decodes base64 and checks the CRC; returns body ‖ crc.
fn decode_checked(text: &str) -> Result<Vec<u8>, DecodeError> {
    let b64 = text.strip_prefix(PREFIX).ok_or(DecodeError::NotATillKey)?;
    if text.len() > MAX_ENCODED_LEN {
        return Err(DecodeError::Malformed(format!(
            "longer than {MAX_ENCODED_LEN} characters"
        )));
    }
    let body = URL_SAFE_NO_PAD.decode(b64).map_err(|e| match e {
        // A key cut short ends in a length no key has, or in a last character whose
        // unused bits are set (which a whole key's never are).
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidLastSymbol(..) => {
            DecodeError::Truncated
        }
        _ => DecodeError::Malformed("invalid characters after `till_`".into()),
    })?;
    if body.len() < MIN_BODY_LEN + CRC_LEN {
        return Err(DecodeError::Truncated);
    }
    let (payload, crc) = body.split_at(body.len() - CRC_LEN);
    if crc32fast::hash(payload).to_be_bytes() != crc {
        return Err(DecodeError::BadChecksum);
    }
    Ok(body)
}

/// Checks only what a secret scanner can check: the prefix, the base64 and the CRC32.
pub fn check_checksum(text: &str) -> Result<(), DecodeError> {
    decode_checked(text).map(|mut b| b.zeroize())
}

fn malformed(e: String) -> DecodeError {
    if e == TRUNCATED {
        DecodeError::Truncated
    } else {
        DecodeError::Malformed(e)
    }
}

/// Parses a body (without the CRC). Strict: anything `encode` would not write is refused.
pub(crate) fn parse_body(body: &[u8]) -> Result<Token, DecodeError> {
    if body.len() < MIN_BODY_LEN {
        return Err(DecodeError::Truncated);
    }
    if body[0] != VERSION {
        return Err(DecodeError::BadVersion(body[0]));
    }
    let (front, tag_bytes) = body.split_at(body.len() - TAG_LEN);
    let mut kid = [0u8; 4];
    kid.copy_from_slice(&front[1..5]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&front[5..HEADER_LEN]);
    let encoded = &front[HEADER_LEN..];
    let mut r = Reader::new(encoded);
    let levels = r.varint().map_err(malformed)?;
    if levels > MAX_LEVELS as u64 {
        return Err(DecodeError::Malformed(format!("{levels} levels")));
    }
    let mut caveats = Vec::with_capacity(4);
    let mut level_marks = 0u128;
    for _ in 0..levels {
        let n = r.varint().map_err(malformed)?;
        if n == 0 {
            return Err(DecodeError::Malformed("an empty level".into()));
        }
        // `n` is untrusted and may be near u64::MAX: the sum must not wrap.
        if (caveats.len() as u64).saturating_add(n) > MAX_CAVEATS as u64 {
            return Err(DecodeError::Malformed(format!(
                "more than {MAX_CAVEATS} caveats"
            )));
        }
        // A level's caveats in strictly increasing order of their encodings, as an encoder
        // writes them: one narrowing, one key.
        let mut previous: &[u8] = &[];
        for _ in 0..n {
            let start = r.position();
            let tag = r.byte().map_err(malformed)?;
            let len = r.varint().map_err(malformed)?;
            let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
            let payload = r.take(len).map_err(malformed)?;
            let caveat = Caveat::decode_payload(tag, payload).map_err(malformed)?;
            let this = &encoded[start..r.position()];
            if this <= previous {
                return Err(DecodeError::Malformed(
                    "a level's caveats are not sorted and unique".into(),
                ));
            }
            previous = this;
            caveats.push(caveat);
        }
        level_marks |= 1 << (caveats.len() - 1);
    }
    if !r.is_empty() {
        return Err(DecodeError::Malformed(
            "trailing bytes before the tag".into(),
        ));
    }
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(tag_bytes);
    let n = caveats.len();
    Ok(Token {
        version: VERSION,
        kid: Kid(kid),
        nonce,
        caveats,
        level_marks,
        tag,
        known_bindings: Vec::new(),
        known_from: n,
    })
}

/// Test support: a token with arbitrary (even unknown or empty) caveats, correctly signed.
#[cfg(test)]
pub(crate) fn sign_unchecked(
    mint: &MintKey,
    levels: Vec<Vec<Caveat>>,
    nonce: [u8; NONCE_LEN],
) -> Token {
    let kid = mint.kid();
    let mut tag = mint.tag0(&header(VERSION, kid, &nonce));
    let mut buf = Vec::new();
    let mut caveats = Vec::new();
    let mut level_marks = 0u128;
    for level in levels {
        let last = level.len().saturating_sub(1);
        for (i, c) in level.into_iter().enumerate() {
            tag = chain_step(&tag, i == last, &c, &mut buf);
            caveats.push(c);
        }
        if !caveats.is_empty() {
            level_marks |= 1 << (caveats.len() - 1);
        }
    }
    let n = caveats.len();
    Token {
        version: VERSION,
        kid,
        nonce,
        caveats,
        level_marks,
        tag,
        known_bindings: Vec::new(),
        known_from: n,
    }
}
