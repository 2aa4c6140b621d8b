//! The mint key: the till-held secret every child key's HMAC chain starts from.
//!
//! It lives in the secrets store as text (`kid:hex`) and in memory in a zeroizing buffer.
//! Nothing here prints, logs or compares the secret in variable time; `Debug` shows only
//! the kid.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use secrecy::SecretString;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// Length of the mint secret in bytes (256 bits).
pub const MINT_SECRET_LEN: usize = 32;

/// The short public id of a mint key: 4 bytes, shown as 8 lowercase hex characters.
///
/// Every token names the kid it was minted under, so a proxy holding several mint keys
/// (during a rotation grace period) knows which one to verify with.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kid(pub [u8; 4]);

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({self})")
    }
}

impl FromStr for Kid {
    type Err = MintKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut kid = [0u8; 4];
        if s.len() != 8
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(MintKeyError::BadKid);
        }
        hex::decode_to_slice(s, &mut kid).map_err(|_| MintKeyError::BadKid)?;
        Ok(Kid(kid))
    }
}

/// Why a mint key could not be made or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintKeyError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error(
        "the stored mint key is not in the form `kid:secret` (8 + 64 lowercase hex characters)"
    )]
    BadFormat,
    #[error("the stored mint key's kid is not 8 lowercase hex characters")]
    BadKid,
}

/// A 256-bit secret plus its kid. Only the holder can mint or verify child keys.
pub struct MintKey {
    kid: Kid,
    secret: Zeroizing<[u8; MINT_SECRET_LEN]>,
    /// HMAC already keyed with the secret (its inner and outer pad blocks absorbed), cloned
    /// for every `tag0`: this saves two of the ~15 SHA-256 blocks a verification hashes. The
    /// `hmac` crate cannot zeroize this state on drop; it is as sensitive as the secret and
    /// lives exactly as long.
    keyed: Hmac<Sha256>,
}

fn keyed(secret: &[u8; MINT_SECRET_LEN]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("any key length")
}

impl MintKey {
    /// A fresh random mint key with a random kid.
    pub fn generate() -> Result<MintKey, MintKeyError> {
        let mut secret = Zeroizing::new([0u8; MINT_SECRET_LEN]);
        let mut kid = [0u8; 4];
        fill_random(&mut secret[..])?;
        fill_random(&mut kid)?;
        Ok(MintKey {
            kid: Kid(kid),
            keyed: keyed(&secret),
            secret,
        })
    }

    /// A mint key from known parts (tests, benchmarks, and reading back a stored key).
    pub fn from_parts(kid: Kid, secret: [u8; MINT_SECRET_LEN]) -> MintKey {
        let secret = Zeroizing::new(secret);
        MintKey {
            kid,
            keyed: keyed(&secret),
            secret,
        }
    }

    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// The text form for a secrets store: `kid:secret`, both lowercase hex
    /// (`1a2b3c4d:` followed by 64 hex characters).
    pub fn to_stored(&self) -> SecretString {
        let mut text = String::with_capacity(8 + 1 + 2 * MINT_SECRET_LEN);
        text.push_str(&self.kid.to_string());
        text.push(':');
        let mut hexed = Zeroizing::new([0u8; 2 * MINT_SECRET_LEN]);
        // Encoding into a fixed buffer keeps the only copy of the hex secret zeroizable.
        hex::encode_to_slice(&self.secret[..], &mut hexed[..]).expect("buffer is the right size");
        text.push_str(std::str::from_utf8(&hexed[..]).expect("hex is ascii"));
        SecretString::from(text)
    }

    /// Reads back what [`MintKey::to_stored`] wrote. Surrounding whitespace is ignored.
    pub fn from_stored(text: &str) -> Result<MintKey, MintKeyError> {
        let (kid, secret_hex) = text.trim().split_once(':').ok_or(MintKeyError::BadFormat)?;
        let kid: Kid = kid.parse()?;
        if secret_hex.len() != 2 * MINT_SECRET_LEN
            || !secret_hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(MintKeyError::BadFormat);
        }
        let mut secret = Zeroizing::new([0u8; MINT_SECRET_LEN]);
        hex::decode_to_slice(secret_hex, &mut secret[..]).map_err(|_| MintKeyError::BadFormat)?;
        Ok(MintKey {
            kid,
            keyed: keyed(&secret),
            secret,
        })
    }

    /// `HMAC(mint_secret, message)`: the first link of every chain.
    pub(crate) fn tag0(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintKey")
            .field("kid", &self.kid)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Fills `buf` from the OS random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), MintKeyError> {
    getrandom::fill(buf).map_err(|e| {
        buf.zeroize();
        MintKeyError::Random(e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn stored_form_round_trips() {
        let key = MintKey::generate().unwrap();
        let stored = key.to_stored();
        let text = stored.expose_secret();
        assert_eq!(text.len(), 8 + 1 + 64);
        assert!(text.starts_with(&format!("{}:", key.kid())));
        let back = MintKey::from_stored(text).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert_eq!(back.secret[..], key.secret[..]);
    }

    #[test]
    fn stored_form_is_checked() {
        let good = format!("0a1b2c3d:{}", "ab".repeat(32));
        assert!(MintKey::from_stored(&good).is_ok());
        assert_eq!(
            MintKey::from_stored(&good.replace(':', "")).unwrap_err(),
            MintKeyError::BadFormat
        );
        assert_eq!(
            MintKey::from_stored(&format!("0A1B2C3D:{}", "ab".repeat(32))).unwrap_err(),
            MintKeyError::BadKid
        );
        assert_eq!(
            MintKey::from_stored(&format!("0a1b2c3d:{}", "ab".repeat(31))).unwrap_err(),
            MintKeyError::BadFormat
        );
        assert_eq!(
            MintKey::from_stored(&format!("0a1b2c3d:{}", "AB".repeat(32))).unwrap_err(),
            MintKeyError::BadFormat
        );
    }

    #[test]
    fn debug_redacts_the_secret() {
        let key = MintKey::from_parts(Kid([1, 2, 3, 4]), [0xab; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("01020304"), "{shown}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }
}
