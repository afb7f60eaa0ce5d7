//! Access tokens (EdDSA JWTs with a `kid`) and opaque refresh tokens.
//!
//! Keys are Ed25519 seeds in files `<kid>.key` (base64) in one directory: the file whose name
//! sorts last signs, every file verifies. Rotating is adding a newer file; retiring is removing
//! an old one after its tokens expired (15 min).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub jti: String,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

pub struct Keyring {
    kid: String,
    signing: SigningKey,
    verifying: HashMap<String, VerifyingKey>,
    /// Tokens whose signature was already checked: skips the Ed25519 math on the hot path.
    verified: moka::sync::Cache<String, Arc<Claims>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring(signing kid {}, {} verifying keys)", self.kid, self.verifying.len())
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
        let verifying = keys.iter().map(|(k, s)| (k.clone(), s.verifying_key())).collect();
        let verified =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build();
        Self { kid, signing, verifying, verified }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header { alg: "EdDSA".into(), typ: "JWT".into(), kid: self.kid.clone() };
        let mut token = String::with_capacity(320);
        token.push_str(&B64.encode(serde_json::to_vec(&header).expect("header serialises")));
        token.push('.');
        token.push_str(&B64.encode(serde_json::to_vec(claims).expect("claims serialise")));
        let signature = self.signing.sign(token.as_bytes());
        token.push('.');
        token.push_str(&B64.encode(signature.to_bytes()));
        token
    }

    /// Checks structure, algorithm, key and signature (once per token), then expiry.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Claims>, TokenError> {
        let claims = match self.verified.get(token) {
            Some(c) => c,
            None => {
                let c = Arc::new(self.verify_signature(token)?);
                self.verified.insert(token.to_string(), c.clone());
                c
            }
        };
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Header = serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
            .map_err(|_| TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Malformed);
        }
        let key = self.verifying.get(&header.kid).ok_or(TokenError::UnknownKey)?;
        let sig_bytes: [u8; 64] = B64.decode(s).ok().and_then(|b| b.try_into().ok()).ok_or(TokenError::Malformed)?;
        key.verify(&token.as_bytes()[..h.len() + 1 + c.len()], &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&B64.decode(c).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)
    }
}

/// A new opaque refresh token: 256 random bits, URL-safe.
pub fn new_refresh_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// What the database keeps of a refresh token: its SHA-256, hex.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn tampered_or_foreign_tokens_are_refused() {
        let ring = Keyring::from_keys(vec![("k1".into(), key(1))]);
        let token = ring.sign(&claims(100));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut forged = claims(100);
        forged.role = "admin".into();
        let forged_body = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(ring.verify(&format!("{head}.{forged_body}.{sig}"), 0).unwrap_err(), TokenError::BadSignature);
        let impostor = Keyring::from_keys(vec![("k1".into(), key(9))]);
        assert_eq!(ring.verify(&impostor.sign(&claims(100)), 0).unwrap_err(), TokenError::BadSignature);
        let none_alg = format!("{}.{forged_body}.", B64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#));
        assert_eq!(ring.verify(&none_alg, 0).unwrap_err(), TokenError::Malformed);
        assert_eq!(ring.verify("a.b", 0).unwrap_err(), TokenError::Malformed);
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
