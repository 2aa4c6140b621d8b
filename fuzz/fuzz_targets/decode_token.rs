//! `cargo +nightly fuzz run decode_token`
//!
//! Feeds arbitrary text to `Token::decode`, and the same bytes as a body with a valid
//! checksum so the parser behind the CRC gets exercised too. Decoding must never panic, and
//! whatever decodes must re-encode to exactly the same text (the format is canonical, which
//! is what makes every altered token fail its signature).

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use till::childkey::{MintKey, Token, check_checksum, verify};

fn exercise(text: &str) {
    let _ = check_checksum(text);
    if let Ok(token) = Token::decode(text) {
        assert_eq!(token.encode(), text, "decode is not canonical");
        let _ = format!("{token:?}");
        let _ = token.levels();
        let _ = token.bindings();
        let mint = MintKey::from_parts(token.kid(), [0x5a; 32]);
        assert!(verify(&token, &mint).is_err(), "a fuzzed token verified");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exercise(text);
    }
    let mut body = data.to_vec();
    body.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    exercise(&format!("till_{}", URL_SAFE_NO_PAD.encode(&body)));
});
