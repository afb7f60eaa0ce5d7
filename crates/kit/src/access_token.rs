//! Access tokens as every service reads them: EdDSA (Ed25519) JWTs with a `kid`, issued by
//! accounts (which also signs them, see `flick_accounts::tokens`). Verifying needs only the
//! public keys, so a service checks a token where it arrives instead of asking accounts on
//! every request; revocation is checked against the shared denylist's local mirror.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What an access token says.
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

impl Claims {
    /// Members of the shared revocation list whose presence revokes this token: its own id
    /// (a logout) and its session's (a logout, a password change, a reused refresh token).
    pub fn revocation_keys(&self) -> Vec<String> {
        vec![jti_key(&self.jti), sid_key(&self.sid)]
    }
}

/// The revocation-list member that revokes the one token `jti`.
pub fn jti_key(jti: &str) -> String {
    format!("jti:{jti}")
}

/// The revocation-list member that revokes every token of session `sid`.
pub fn sid_key(sid: &str) -> String {
    format!("sid:{sid}")
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    pub typ: String,
    pub kid: String,
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

/// The longest token accepted: ours are ~330 bytes; a huge one is an attack on the parser.
const MAX_TOKEN_LEN: usize = 4096;

/// The public keys tokens are checked against, with the tokens already checked.
pub struct VerifyingKeys {
    keys: HashMap<String, VerifyingKey>,
    /// Tokens whose signature was already checked: skips the Ed25519 math on the hot path.
    verified: moka::sync::Cache<String, Arc<Claims>>,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        write!(f, "VerifyingKeys({kids:?})")
    }
}

impl VerifyingKeys {
    pub fn new(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        let verified =
            moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(3600)).build();
        Self { keys: keys.into_iter().collect(), verified }
    }

    /// From raw 32-byte Ed25519 public keys, as accounts publishes them; a malformed key is
    /// an error rather than silently missing.
    pub fn from_public_keys(keys: impl IntoIterator<Item = (String, Vec<u8>)>) -> anyhow::Result<Self> {
        let mut parsed = Vec::new();
        for (kid, bytes) in keys {
            let bytes: [u8; 32] =
                bytes.try_into().map_err(|_| anyhow::anyhow!("verification key {kid} is not 32 bytes"))?;
            parsed
                .push((kid.clone(), VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("key {kid}: {e}"))?));
        }
        Ok(Self::new(parsed))
    }

    pub fn kids(&self) -> impl Iterator<Item = (&String, &VerifyingKey)> {
        self.keys.iter()
    }

    /// Checks structure, algorithm, key and signature (once per token), then expiry against
    /// `now` (Unix seconds).
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
        if token.len() > MAX_TOKEN_LEN {
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
        let key = self.keys.get(&header.kid).ok_or(TokenError::UnknownKey)?;
        let sig_bytes: [u8; 64] = B64.decode(s).ok().and_then(|b| b.try_into().ok()).ok_or(TokenError::Malformed)?;
        key.verify(&token.as_bytes()[..h.len() + 1 + c.len()], &Signature::from_bytes(&sig_bytes))
            .map_err(|_| TokenError::BadSignature)?;
        serde_json::from_slice(&B64.decode(c).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)
    }
}

/// Signs `claims` with `key` under `kid`: accounts' half of the format, here so both halves
/// are read side by side (and so tests anywhere can make tokens).
pub fn sign(kid: &str, key: &ed25519_dalek::SigningKey, claims: &Claims) -> String {
    use ed25519_dalek::Signer;
    let header = Header { alg: "EdDSA".into(), typ: "JWT".into(), kid: kid.to_string() };
    let mut token = String::with_capacity(320);
    token.push_str(&B64.encode(serde_json::to_vec(&header).expect("header serialises")));
    token.push('.');
    token.push_str(&B64.encode(serde_json::to_vec(claims).expect("claims serialise")));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&B64.encode(signature.to_bytes()));
    token
}

/// The keys as a JSON Web Key Set (RFC 8037 OKP keys), for verifiers outside Flick (a
/// router's or a mesh's JWT check).
pub fn jwks(keys: &VerifyingKeys) -> serde_json::Value {
    let mut keys: Vec<_> = keys.kids().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    let keys: Vec<_> = keys
        .into_iter()
        .map(|(kid, key)| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": kid, "x": B64.encode(key.as_bytes()),
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn claims(exp: i64) -> Claims {
        Claims { sub: "u".into(), jti: "j".into(), sid: "s".into(), role: "user".into(), iat: 0, exp }
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn keys(list: &[(&str, u8)]) -> VerifyingKeys {
        VerifyingKeys::new(list.iter().map(|(kid, n)| (kid.to_string(), key(*n).verifying_key())))
    }

    #[test]
    fn signed_tokens_verify_until_they_expire() {
        let token = sign("k1", &key(1), &claims(100));
        let keys = keys(&[("k1", 1)]);
        assert_eq!(*keys.verify(&token, 50).unwrap(), claims(100));
        assert_eq!(keys.verify(&token, 100).unwrap_err(), TokenError::Expired, "and not after, even once cached");
    }

    #[test]
    fn tampered_foreign_or_unknown_key_tokens_are_refused() {
        let ring = keys(&[("k1", 1)]);
        let token = sign("k1", &key(1), &claims(100));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut forged = claims(100);
        forged.role = "admin".into();
        let forged_body = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(ring.verify(&format!("{head}.{forged_body}.{sig}"), 0).unwrap_err(), TokenError::BadSignature);
        assert_eq!(ring.verify(&sign("k1", &key(9), &claims(100)), 0).unwrap_err(), TokenError::BadSignature);
        assert_eq!(ring.verify(&sign("k2", &key(1), &claims(100)), 0).unwrap_err(), TokenError::UnknownKey);
        let none_alg = format!("{}.{forged_body}.", B64.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#));
        assert_eq!(ring.verify(&none_alg, 0).unwrap_err(), TokenError::Malformed);
        assert_eq!(ring.verify("a.b", 0).unwrap_err(), TokenError::Malformed);
        assert_eq!(ring.verify(&"a".repeat(5000), 0).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn published_keys_verify_what_the_private_key_signed() {
        let raw = key(3).verifying_key().as_bytes().to_vec();
        let keys = VerifyingKeys::from_public_keys([("k3".to_string(), raw)]).unwrap();
        assert!(keys.verify(&sign("k3", &key(3), &claims(100)), 0).is_ok());
        assert!(VerifyingKeys::from_public_keys([("bad".to_string(), vec![1, 2, 3])]).is_err());
        let set = jwks(&keys);
        assert_eq!(set["keys"][0]["kid"], "k3");
        assert_eq!(set["keys"][0]["crv"], "Ed25519");
        assert_eq!(B64.decode(set["keys"][0]["x"].as_str().unwrap()).unwrap(), key(3).verifying_key().as_bytes());
    }

    #[test]
    fn revocation_keys_name_the_token_and_its_session() {
        assert_eq!(claims(1).revocation_keys(), vec!["jti:j".to_string(), "sid:s".to_string()]);
    }
}
