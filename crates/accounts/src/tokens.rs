//! Access tokens (EdDSA JWTs with a `kid`) and opaque refresh tokens.
//!
//! Keys are Ed25519 seeds in files `<kid>.key` (base64) in one directory: the file whose name
//! sorts last signs, every file verifies. Rotating is adding a newer file; retiring is removing
//! an old one after its tokens expired (15 min).

use base64::Engine;
use ed25519_dalek::SigningKey;
pub use flick_kit::access_token::{Claims, TokenError};
use flick_kit::access_token::{VerifyingKeys, sign};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

pub struct Keyring {
    kid: String,
    signing: SigningKey,
    verifying: VerifyingKeys,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring(signing kid {}, {:?})", self.kid, self.verifying)
    }
}

impl Keyring {
    /// Loads every `*.key` in `dir`, generating a first key when there is none.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "key") {
                let kid = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                let text = std::fs::read_to_string(&path)?;
                let seed: [u8; 32] = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow::anyhow!("{} is not a base64 Ed25519 seed", path.display()))?;
                keys.push((kid, SigningKey::from_bytes(&seed)));
            }
        }
        if keys.is_empty() {
            let (kid, key) = Self::generate_key_file(dir)?;
            keys.push((kid, key));
        }
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self::from_keys(keys))
    }

    /// Writes a new signing key that sorts after the existing ones; returns its kid.
    pub fn generate_key_file(dir: &Path) -> anyhow::Result<(String, SigningKey)> {
        std::fs::create_dir_all(dir)?;
        let kid = format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
        let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let path = dir.join(format!("{kid}.key"));
        std::fs::write(&path, base64::engine::general_purpose::STANDARD.encode(key.to_bytes()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok((kid, key))
    }

    /// `keys` sorted by kid; the last one signs.
    pub fn from_keys(keys: Vec<(String, SigningKey)>) -> Self {
        let (kid, signing) = keys.last().cloned().expect("at least one key");
        let verifying = VerifyingKeys::new(keys.iter().map(|(k, s)| (k.clone(), s.verifying_key())));
        Self { kid, signing, verifying }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        sign(&self.kid, &self.signing, claims)
    }

    /// Checks structure, algorithm, key and signature (once per token), then expiry.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        self.verifying.verify(token, now)
    }

    /// The keys that verify: what accounts publishes (gRPC `VerificationKeys`, JWKS).
    pub fn verifying_keys(&self) -> &VerifyingKeys {
        &self.verifying
    }
}

/// A new opaque refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What the database keeps of a refresh token: its SHA-256, hex.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    fn claims(exp: i64) -> Claims {
        Claims { sub: "u".into(), jti: "j".into(), sid: "s".into(), role: "user".into(), iat: 0, exp }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let ring = Keyring::from_keys(vec![("k1".into(), key(1))]);
        let token = ring.sign(&claims(100));
        assert_eq!(*ring.verify(&token, 50).unwrap(), claims(100));
        assert_eq!(ring.verify(&token, 100).unwrap_err(), TokenError::Expired);
    }

    #[test]
    fn previous_keys_still_verify_after_rotation() {
        let old = Keyring::from_keys(vec![("k1".into(), key(1))]);
        let token = old.sign(&claims(100));
        let rotated = Keyring::from_keys(vec![("k1".into(), key(1)), ("k2".into(), key(2))]);
        assert!(rotated.verify(&token, 0).is_ok(), "the previous key verifies");
        assert!(rotated.sign(&claims(100)).starts_with(&B64.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"k2"}"#)));
        let retired = Keyring::from_keys(vec![("k2".into(), key(2))]);
        assert_eq!(retired.verify(&token, 0).unwrap_err(), TokenError::UnknownKey);
    }

    #[test]
    fn key_files_are_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = Keyring::load_or_create(dir.path()).unwrap();
        let token = first.sign(&claims(100));
        let again = Keyring::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&token, 0).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let a = new_refresh_token();
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert_ne!(a, new_refresh_token());
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_ne!(hash_refresh_token(&a), a);
    }
}
