//! Child keys: minting, offline attenuation, encoding and verification.
//!
//! This module owns the token format and the HMAC chain. It never stores anything, never
//! talks to the keychain or the ledger, and never decides policy beyond "does this request
//! fit this key's caveats": budgets and rates are handed back to the proxy to enforce.
//!
//! # The chain
//!
//! A [`MintKey`] (256 random bits plus a 4-byte `kid`) lives in the secrets store.
//!
//! ```text
//! tag_0 = HMAC-SHA256(mint_secret, version ‖ kid ‖ nonce)
//! tag_i = HMAC-SHA256(tag_{i-1}, ends_level_i ‖ encoding(caveat_i))      i = 1..n
//! binding_i = SHA256(tag_i)
//! ```
//!
//! `ends_level_i` is one byte, 1 when caveat *i* is the last caveat of its level and 0
//! otherwise. It puts the level structure under the signature and closes every level: a
//! holder can append a new level (attenuate) but cannot re-split levels or extend an existing
//! one, so a budget charged to a level's binding can never be moved to a fresh counter.
//!
//! The token carries the version, kid, nonce, caveats and `tag_n` only. Whoever holds it can
//! append caveats by continuing the chain from `tag_n` (attenuation needs no secret) but can
//! remove none, since that would need an earlier tag. The binding at the end of a level names
//! the key that level made: the ledger keys budgets and revocations by it. The verifier, who
//! recomputes the whole chain, learns every binding ([`Verified::bindings`]); an attenuator
//! learns its parent's binding and the new ones ([`Token::bindings`]).
//!
//! # Text format (version 1)
//!
//! ```text
//! till_ BASE64URL_NOPAD( body ‖ crc32(body) )
//!
//! body   = version:u8 (=1) ‖ kid:[u8;4] ‖ nonce:[u8;16]
//!          ‖ varint(level_count) ‖ level* ‖ tag:[u8;32]
//! level  = varint(caveat_count ≥ 1) ‖ caveat*
//! caveat = tag:u8 ‖ varint(len) ‖ payload[len]
//! crc32  = CRC-32/ISO-HDLC (zlib's, crc32fast's) of body, 4 bytes big-endian
//! varint = unsigned LEB128, minimal length
//! ```
//!
//! A secret scanner finds keys with [`TOKEN_REGEX`] and confirms one without any secret:
//! strip `till_`, base64url-decode, and compare the last 4 bytes with the CRC-32 of the rest
//! ([`check_checksum`]). The smallest possible body is 54 bytes, so every token has at
//! least 78 characters after `till_`.
//!
//! Caveat payloads (all integers are varints):
//!
//! | tag | caveat | payload |
//! |---|---|---|
//! | 0x01 | `Allow` | count, then per pattern `u8 len ‖ provider ‖ u8 len ‖ glob` (len 0 = provider-wide), sorted, unique |
//! | 0x02 | `Endpoints` | one byte: bit 0 inference, 1 models, 2 files, 3 batches, 4 admin; `0x80` = all |
//! | 0x03 | `Expires` | unix seconds |
//! | 0x04 | `BudgetUsd` | micro-dollars |
//! | 0x05 | `BudgetTokens` | tokens |
//! | 0x06 | `Rpm` | requests per minute (≤ u32) |
//! | 0x07 | `Tpm` | tokens per minute |
//! | 0x08 | `MaxRequests` | count |
//! | 0x09 | `MaxOutputTokens` | tokens per request |
//! | 0x0a | `Session` | ASCII id (`[A-Za-z0-9._-]`, 1–64) |
//! | other | `Unknown` | kept verbatim; verification refuses it |
//!
//! Within a level caveats are sorted by their encoding and deduplicated. Decoding is strict
//! (a decoded token re-encodes to the same text), so a changed character is always caught by
//! the checksum, the decoder, or the signature.

mod caveat;
mod glob;
mod mintkey;
mod token;
mod verify;

#[cfg(test)]
mod tests;

pub use caveat::{
    Caveat, EndpointClass, EndpointSet, MAX_GLOB_LEN, MAX_PATTERNS, MAX_PROVIDER_LEN,
    MAX_SESSION_LEN, ModelPattern, canonicalize, is_model_name,
};
pub(crate) use caveat::{glob_char_advice, invalid_glob_char, invalid_provider_char};
pub use glob::glob_match;
pub use mintkey::{Kid, MINT_SECRET_LEN, MintKey, MintKeyError};
pub use token::{
    Binding, DecodeError, Level, MAX_CAVEATS, MAX_ENCODED_LEN, MAX_LEVELS, MintError, PREFIX,
    Token, VERSION, check_checksum,
};
pub use verify::{Checked, Denial, Grant, LevelLimit, Limit, RequestFacts, Verified, verify};

/// Matches every encoded till key (RE2 and Rust `regex` syntax; use it in secret scanners).
///
/// `till_` followed by at least 78 base64url characters. It cannot match OpenAI (`sk-…`,
/// `sk-proj-…`), Anthropic (`sk-ant-…`), Gemini (`AIza…`) or GitHub (`ghp_…`,
/// `github_pat_…`) keys, none of which contain `till_`.
pub const TOKEN_REGEX: &str = r"\btill_[A-Za-z0-9_-]{78,}";
