//! Small cryptographic helpers shared by every domain.

/// Compares two secrets in time that depends only on their lengths, never on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // `black_box` stops the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Prefix of a value sealed by [`seal`] (version 1: AES-256-GCM, 96-bit random nonce).
pub const SEALED_PREFIX: &str = "enc:v1:";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("ENCRYPTION_KEY must be 64 hex characters (32 bytes)")]
    BadKey,
    #[error("not a sealed value (expected enc:v1:<base64>)")]
    NotSealed,
    #[error("cannot be decrypted with this ENCRYPTION_KEY (wrong key or altered value)")]
    Undecryptable,
}

fn aead_key(hex_key: &str) -> Result<aws_lc_rs::aead::LessSafeKey, SealError> {
    use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
    let bytes = hex::decode(hex_key.trim()).map_err(|_| SealError::BadKey)?;
    let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey)?;
    Ok(LessSafeKey::new(key))
}

/// Encrypts a secret for the config file: `enc:v1:` + base64(nonce ‖ ciphertext ‖ tag).
pub fn seal(hex_key: &str, plaintext: &str) -> Result<String, SealError> {
    use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
    use base64::Engine;
    let key = aead_key(hex_key)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::BadKey)?;
    let mut data = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
        .map_err(|_| SealError::BadKey)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    ))
}

/// Decrypts a value made by [`seal`].
pub fn open(hex_key: &str, sealed: &str) -> Result<String, SealError> {
    use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
    use base64::Engine;
    let key = aead_key(hex_key)?;
    let raw = sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .filter(|r| r.len() > NONCE_LEN)
        .ok_or(SealError::NotSealed)?;
    let (nonce, data) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::NotSealed)?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::empty(), &mut data)
        .map_err(|_| SealError::Undecryptable)?;
    String::from_utf8(plain.to_vec()).map_err(|_| SealError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn sealed_secrets_open_with_their_key_only_and_detect_tampering() {
        let sealed = seal(KEY, "sk-live-secret").unwrap();
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert_ne!(
            seal(KEY, "sk-live-secret").unwrap(),
            sealed,
            "a fresh nonce each time"
        );
        assert_eq!(open(KEY, &sealed).unwrap(), "sk-live-secret");
        let other = KEY.replace("00", "ff");
        assert_eq!(open(&other, &sealed), Err(SealError::Undecryptable));
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(KEY, &String::from_utf8(bytes).unwrap()),
            Err(SealError::Undecryptable)
        );
        assert_eq!(open(KEY, "sk-plain"), Err(SealError::NotSealed));
        assert_eq!(seal("abc", "x"), Err(SealError::BadKey));
    }

    #[test]
    fn equal_only_when_every_byte_matches() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret-token", b"secret-toke"));
        assert!(constant_time_eq(b"", b""));
    }
}
