//! Who is calling. Identity comes only from the mesh: the edge's ForwardAuth sets
//! `X-User-Id` (after stripping any client copy) and the router forwards it; gRPC callers
//! send it as `x-user-id` metadata. Services never read identity from anywhere else.

use crate::error::AppError;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use uuid::Uuid;

pub const USER_ID_HEADER: &str = "x-user-id";
pub const USER_ROLE_HEADER: &str = "x-user-role";
/// Proof that identity headers come from the mesh: the edge sets it on every request it
/// forwards (after removing any client copy), the router propagates it, services send it on
/// internal calls. Without it `x-user-id` is ignored, whatever network a request came from.
pub const MESH_HEADER: &str = "x-flick-mesh";

static MESH_SECRET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Makes identity headers count only beside the mesh secret (`identity.mesh_secret`).
/// Called once at start-up; without a call (or with none) identity is trusted by network
/// position alone, which [`check_mesh_secret`] allows only on loopback.
pub fn require_mesh_secret(secret: Option<&str>) {
    let _ = MESH_SECRET.set(secret.filter(|s| !s.is_empty()).map(str::to_owned));
}

/// The shortest mesh secret a service exposed beyond loopback accepts: 128 bits as hex.
pub const MIN_MESH_SECRET_LEN: usize = 32;

/// Values that were once published as examples; a secret anyone can read is no secret.
const KNOWN_SECRETS: &[&str] = &["flick-dev-mesh-secret-change-me", "change-me", "changeme", "secret"];

/// Refuses to serve identity-bearing routes on `host` without a usable mesh secret.
///
/// Without one, `x-user-id` is trusted by network position: fine for the one-process mode on
/// loopback (only this machine can connect), fatal on any other address, where anyone who
/// reaches the port could act as any user (user ids are public). An empty value (say, an
/// empty key in an existing Kubernetes Secret) counts as none, never as "no check".
pub fn check_mesh_secret(secret: Option<&str>, host: &str) -> anyhow::Result<()> {
    let loopback = match host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost",
    };
    let secret = secret.map(str::trim).filter(|s| !s.is_empty());
    match secret {
        None if loopback => Ok(()),
        None => anyhow::bail!(
            "refusing to serve on {host} without identity.mesh_secret (FLICK_IDENTITY__MESH_SECRET): anyone who \
             can reach this port could claim any user with an x-user-id header. Set it to the value the edge \
             sends as X-Flick-Mesh (at least {MIN_MESH_SECRET_LEN} characters, e.g. `openssl rand -hex 32`), or \
             serve on 127.0.0.1"
        ),
        Some(s) if KNOWN_SECRETS.iter().any(|k| k.eq_ignore_ascii_case(s)) => anyhow::bail!(
            "identity.mesh_secret is a published example value; generate your own (e.g. `openssl rand -hex 32`)"
        ),
        Some(s) if !loopback && s.len() < MIN_MESH_SECRET_LEN => anyhow::bail!(
            "identity.mesh_secret is {} characters; serving on {host} needs at least {MIN_MESH_SECRET_LEN} \
             (e.g. `openssl rand -hex 32`)",
            s.len()
        ),
        Some(_) => Ok(()),
    }
}

/// The client's address: the edge's `X-Forwarded-For` (Traefik replaces client copies), else
/// the peer. For throttling and counting, never for identity.
pub fn client_address(headers: &HeaderMap, peer: Option<std::net::SocketAddr>) -> Option<String> {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .or_else(|| peer.map(|p| p.ip().to_string()))
}

/// A keyed hash of a client address, so anonymous viewers deduplicate without the address
/// itself reaching the cache, the documents, the outbox or the broker. Keyed by the mesh
/// secret, which every replica shares (the same viewer is one viewer on each); a random key
/// per process without one. 128 bits of hex: no collisions among real viewers.
pub fn address_pseudonym(address: &str) -> String {
    use hmac::{Hmac, Mac};
    static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(|| match mesh_secret() {
        Some(secret) => [b"flick:view-address:".as_slice(), secret.as_bytes()].concat(),
        None => rand::random::<[u8; 32]>().to_vec(),
    });
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(address.as_bytes());
    let digest = mac.finalize().into_bytes();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The mesh secret this process sends on internal calls, if one is configured.
pub fn mesh_secret() -> Option<&'static str> {
    MESH_SECRET.get().and_then(|s| s.as_deref())
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller of a request: anonymous, or a user with a role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Option<Uuid>,
    pub role: Option<String>,
}

impl Caller {
    pub fn anonymous() -> Self {
        Self::default()
    }

    pub fn user(user_id: Uuid, role: impl Into<String>) -> Self {
        Self { user_id: Some(user_id), role: Some(role.into()) }
    }

    /// Reads the identity headers; a malformed id, or a missing or wrong mesh secret when
    /// one is required, is treated as no identity.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self::from_headers_with(headers, mesh_secret())
    }

    /// [`Self::from_headers`] against an explicit mesh secret.
    pub fn from_headers_with(headers: &HeaderMap, secret: Option<&str>) -> Self {
        if let Some(secret) = secret {
            let given = headers.get(MESH_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if !constant_time_eq(given, secret.as_bytes()) {
                return Self::anonymous();
            }
        }
        let user_id =
            headers.get(USER_ID_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| Uuid::parse_str(v.trim()).ok());
        let role = user_id.and_then(|_| headers.get(USER_ROLE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned));
        Self { user_id, role }
    }

    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Self {
        Self::from_headers(&request.metadata().clone().into_headers())
    }

    /// Puts this caller (and the mesh secret) on an internal gRPC request.
    pub fn to_grpc<T>(&self, request: &mut tonic::Request<T>) {
        let md = request.metadata_mut();
        if let Some(id) = self.user_id
            && let Ok(v) = id.to_string().parse()
        {
            md.insert(USER_ID_HEADER, v);
        }
        if let Some(role) = self.role.as_deref()
            && let Ok(v) = role.parse()
        {
            md.insert(USER_ROLE_HEADER, v);
        }
        if let Some(secret) = mesh_secret()
            && let Ok(v) = secret.parse()
        {
            md.insert(MESH_HEADER, v);
        }
    }

    /// The user id, or UNAUTHENTICATED for anonymous callers.
    pub fn require_user(&self) -> Result<Uuid, AppError> {
        self.user_id.ok_or_else(|| AppError::unauthenticated("login required"))
    }

    /// The owner rule: only `owner` may change what they own.
    pub fn require_owner(&self, owner: Uuid) -> Result<Uuid, AppError> {
        let me = self.require_user()?;
        if me == owner { Ok(me) } else { Err(AppError::forbidden("only the owner may do this")) }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::from_headers(&parts.headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn address_pseudonyms_are_stable_distinct_and_hide_the_address() {
        let a = address_pseudonym("203.0.113.7");
        assert_eq!(a, address_pseudonym("203.0.113.7"), "the same viewer deduplicates");
        assert_ne!(a, address_pseudonym("203.0.113.8"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "hex only, so no address in it: {a}");
    }

    #[test]
    fn client_address_prefers_the_edge_header() {
        let peer: std::net::SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_address(&h, Some(peer)).as_deref(), Some("10.1.2.3"));
        h.insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        assert_eq!(client_address(&h, Some(peer)).as_deref(), Some("203.0.113.7"));
        assert_eq!(client_address(&HeaderMap::new(), None), None);
    }

    #[test]
    fn reads_user_and_role_from_edge_headers() {
        let id = Uuid::now_v7();
        let mut headers = HeaderMap::new();
        headers.insert(USER_ID_HEADER, id.to_string().parse().unwrap());
        headers.insert(USER_ROLE_HEADER, "admin".parse().unwrap());
        assert_eq!(Caller::from_headers(&headers), Caller::user(id, "admin"));
    }

    #[test]
    fn malformed_or_missing_ids_are_anonymous() {
        let mut headers = HeaderMap::new();
        headers.insert(USER_ROLE_HEADER, "admin".parse().unwrap());
        assert_eq!(Caller::from_headers(&headers), Caller::anonymous());
        headers.insert(USER_ID_HEADER, "not-a-uuid".parse().unwrap());
        assert_eq!(Caller::from_headers(&headers), Caller::anonymous());
    }

    #[test]
    fn with_a_mesh_secret_identity_counts_only_beside_it() {
        let id = Uuid::now_v7();
        let mut headers = HeaderMap::new();
        headers.insert(USER_ID_HEADER, id.to_string().parse().unwrap());
        assert_eq!(Caller::from_headers_with(&headers, Some("s3cret")), Caller::anonymous(), "no secret");
        headers.insert(MESH_HEADER, "s3creT".parse().unwrap());
        assert_eq!(Caller::from_headers_with(&headers, Some("s3cret")), Caller::anonymous(), "a wrong secret");
        headers.insert(MESH_HEADER, "s3cret".parse().unwrap());
        assert_eq!(Caller::from_headers_with(&headers, Some("s3cret")).user_id, Some(id));
        assert_eq!(Caller::from_headers_with(&headers, None).user_id, Some(id), "no secret required");
    }

    #[test]
    fn exposed_services_need_a_real_mesh_secret() {
        let good = "0123456789abcdef0123456789abcdef";
        check_mesh_secret(None, "127.0.0.1").expect("loopback may run without one");
        check_mesh_secret(Some(""), "::1").expect("loopback may run without one");
        check_mesh_secret(Some("short"), "127.0.0.1").expect("loopback takes any secret");
        check_mesh_secret(Some(good), "0.0.0.0").expect("exposed with a real secret");
        let err = check_mesh_secret(None, "0.0.0.0").unwrap_err().to_string();
        assert!(err.contains("refusing to serve on 0.0.0.0 without identity.mesh_secret"), "{err}");
        let err = check_mesh_secret(Some("  "), "10.0.0.5").unwrap_err().to_string();
        assert!(err.contains("without identity.mesh_secret"), "an empty secret is none: {err}");
        let err = check_mesh_secret(Some("abc"), "::").unwrap_err().to_string();
        assert!(err.contains("needs at least 32"), "{err}");
        let err = check_mesh_secret(Some("flick-dev-mesh-secret-change-me"), "127.0.0.1").unwrap_err().to_string();
        assert!(err.contains("published example"), "{err}");
    }

    #[test]
    fn grpc_metadata_carries_identity() {
        let id = Uuid::now_v7();
        let mut request = tonic::Request::new(());
        request.metadata_mut().insert(USER_ID_HEADER, id.to_string().parse().unwrap());
        assert_eq!(Caller::from_grpc(&request).user_id, Some(id));
    }

    #[test]
    fn owner_rule_distinguishes_anonymous_others_and_owner() {
        let owner = Uuid::now_v7();
        assert_eq!(Caller::anonymous().require_owner(owner).unwrap_err().code(), ErrorCode::Unauthenticated);
        assert_eq!(Caller::user(Uuid::now_v7(), "user").require_owner(owner).unwrap_err().code(), ErrorCode::Forbidden);
        assert_eq!(Caller::user(owner, "user").require_owner(owner).unwrap(), owner);
    }
}

/// The shared list of revoked tokens, as seen by a long-lived connection: it wakes on each
/// addition and answers from the local mirror. Implemented over the cache's denylist by
/// `flick_platform`; kit only knows this shape.
pub trait RevocationFeed: Send + Sync + std::fmt::Debug {
    /// Changes whenever a token or session may have been revoked (a logout on any replica).
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Whether any of `keys` (a token's [`TokenSession::revocation_keys`]) is on the list.
    /// `None` when the list cannot answer now; the caller then asks accounts.
    fn is_revoked<'a>(
        &'a self,
        keys: &'a [String],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<bool>> + Send + 'a>>;
}

/// What a verified token proves, and what ends it.
#[derive(Clone, Debug)]
pub struct TokenSession {
    pub caller: Caller,
    /// The token's expiry (Unix ms); 0 when accounts did not say.
    pub expires_at_ms: i64,
    /// Revocation-list members that revoke the token (its id, its session).
    pub revocation_keys: Vec<String>,
}

type AccountsClient =
    flick_proto::accounts::v1::accounts_service_client::AccountsServiceClient<crate::telemetry::TracedChannel>;

/// How often an unknown `kid` may send the verifier back to accounts for keys: a rotation is
/// picked up at once, a flood of forged kids costs one call per interval.
const KEY_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Beyond a token's lifetime: how long after the denylist failed to answer tokens are still
/// checked by accounts, which also looks in its database. A logout during a cache outage is
/// only in the database, and reaches the denylist again only when accounts' retry lands.
const FALLBACK_MARGIN_MS: i64 = 60_000;

/// Verifies access tokens where they arrive: signature with accounts' public keys (fetched
/// once over gRPC `VerificationKeys`, again when a token names a newer key), expiry, and
/// revocation in the local mirror of the shared denylist. When the mirror cannot vouch for a
/// "not revoked" (Redis unreachable, or was lately) the token goes to accounts (`VerifyToken`,
/// which falls back to its database), as does every token when there is no denylist feed or
/// the keys cannot be had.
///
/// Used for `/graphql` requests (the edge no longer asks accounts for them), WebSocket
/// subscriptions, and queries the router sends for a WebSocket client.
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    client: AccountsClient,
    revocations: Option<std::sync::Arc<dyn RevocationFeed>>,
    local: std::sync::Arc<LocalKeys>,
}

#[derive(Debug, Default)]
struct LocalKeys {
    keys: std::sync::RwLock<Option<std::sync::Arc<crate::access_token::VerifyingKeys>>>,
    /// Monotonic ms of the last fetch attempt, 0 before the first.
    fetched_at_ms: std::sync::atomic::AtomicI64,
    fetching: tokio::sync::Mutex<()>,
    token_ttl_ms: std::sync::atomic::AtomicI64,
    /// Until when (Unix ms) tokens go to accounts because the denylist could not answer.
    ask_accounts_until_ms: std::sync::atomic::AtomicI64,
}

fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as i64 + 1
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl TokenVerifier {
    /// Connects on first use (accounts may start later than the caller).
    pub fn connect_lazy(accounts_url: &str) -> anyhow::Result<Self> {
        let endpoint = tonic::transport::Endpoint::from_shared(accounts_url.to_string())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(5));
        Ok(Self {
            client: AccountsClient::new(crate::telemetry::traced(endpoint.connect_lazy())),
            revocations: None,
            local: std::sync::Arc::default(),
        })
    }

    /// Checks revocations in the shared list (locally, and watching it so a logout ends open
    /// connections at once). Without it every token is checked by accounts.
    pub fn with_revocations(mut self, feed: std::sync::Arc<dyn RevocationFeed>) -> Self {
        self.revocations = Some(feed);
        self
    }

    pub fn revocations(&self) -> Option<&std::sync::Arc<dyn RevocationFeed>> {
        self.revocations.as_ref()
    }

    /// The token's user, or an error safe to show (invalid, expired, revoked, unreachable).
    pub async fn verify(&self, token: &str) -> Result<Caller, AppError> {
        Ok(self.verify_session(token).await?.caller)
    }

    /// [`Self::verify`], with what a long-lived connection needs to notice the token's end.
    pub async fn verify_session(&self, token: &str) -> Result<TokenSession, AppError> {
        match self.verify_locally(token).await? {
            Some(session) => Ok(session),
            None => self.verify_with_accounts(token).await,
        }
    }

    /// The local verdict; `Ok(None)` when only accounts can give one.
    async fn verify_locally(&self, token: &str) -> Result<Option<TokenSession>, AppError> {
        use crate::access_token::TokenError;
        let Some(feed) = &self.revocations else { return Ok(None) };
        if unix_ms() < self.local.ask_accounts_until_ms.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let held = self.local.keys.read().expect("keys lock").clone();
        let Some(keys) = (match held {
            Some(keys) => Some(keys),
            None => self.refresh_keys(None).await,
        }) else {
            return Ok(None);
        };
        let now = unix_ms() / 1000;
        let claims = match keys.verify(token, now) {
            // A key newer than ours (accounts rotated): fetch again and retry once.
            Err(TokenError::UnknownKey) => match self.refresh_keys(Some(&keys)).await {
                Some(fresh) => fresh.verify(token, now),
                None => Err(TokenError::UnknownKey),
            },
            verdict => verdict,
        }
        .map_err(|e| match e {
            TokenError::Expired => AppError::unauthenticated("token expired"),
            _ => AppError::unauthenticated("invalid token"),
        })?;
        let id = Uuid::parse_str(&claims.sub).map_err(|_| AppError::unauthenticated("invalid token"))?;
        let revocation_keys = claims.revocation_keys();
        match feed.is_revoked(&revocation_keys).await {
            Some(true) => Err(AppError::unauthenticated("token revoked")),
            Some(false) => Ok(Some(TokenSession {
                caller: Caller::user(id, claims.role.clone()),
                expires_at_ms: claims.exp * 1000,
                revocation_keys,
            })),
            None => {
                let ttl = self.local.token_ttl_ms.load(std::sync::atomic::Ordering::Relaxed);
                let until = unix_ms() + ttl + FALLBACK_MARGIN_MS;
                self.local.ask_accounts_until_ms.fetch_max(until, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("the revocation list cannot answer; checking tokens with accounts for a while");
                Ok(None)
            }
        }
    }

    /// Fetches the keys from accounts, replacing `stale` (the keys a caller found wanting);
    /// at most once every [`KEY_REFRESH_INTERVAL`], so a flood of tokens naming unknown keys
    /// costs one call per interval. `None` when no keys can be had.
    async fn refresh_keys(
        &self,
        stale: Option<&std::sync::Arc<crate::access_token::VerifyingKeys>>,
    ) -> Option<std::sync::Arc<crate::access_token::VerifyingKeys>> {
        use std::sync::atomic::Ordering;
        let _one_at_a_time = self.local.fetching.lock().await;
        let current = self.local.keys.read().expect("keys lock").clone();
        if current.as_ref().map(std::sync::Arc::as_ptr) != stale.map(std::sync::Arc::as_ptr) {
            return current; // another caller fetched meanwhile
        }
        let last = self.local.fetched_at_ms.load(Ordering::Relaxed);
        if last != 0 && mono_ms() - last < KEY_REFRESH_INTERVAL.as_millis() as i64 {
            return current;
        }
        self.local.fetched_at_ms.store(mono_ms(), Ordering::Relaxed);
        let mut request = tonic::Request::new(flick_proto::accounts::v1::VerificationKeysRequest {});
        Caller::anonymous().to_grpc(&mut request);
        let fetched = match self.client.clone().verification_keys(request).await {
            Ok(r) => {
                let r = r.into_inner();
                self.local.token_ttl_ms.store(r.access_token_ttl_ms, Ordering::Relaxed);
                crate::access_token::VerifyingKeys::from_public_keys(
                    r.keys.into_iter().map(|k| (k.kid, k.ed25519_public_key)),
                )
                .map_err(|e| tracing::warn!(error = %e, "accounts sent an unusable verification key"))
                .ok()
            }
            Err(s) => {
                tracing::debug!(error = %s.message(), "cannot fetch verification keys from accounts");
                None
            }
        };
        match fetched {
            Some(keys) => {
                let keys = std::sync::Arc::new(keys);
                *self.local.keys.write().expect("keys lock") = Some(keys.clone());
                Some(keys)
            }
            None => current,
        }
    }

    async fn verify_with_accounts(&self, token: &str) -> Result<TokenSession, AppError> {
        let mut request =
            tonic::Request::new(flick_proto::accounts::v1::VerifyTokenRequest { access_token: token.to_string() });
        Caller::anonymous().to_grpc(&mut request);
        match self.client.clone().verify_token(request).await {
            Ok(r) => {
                let r = r.into_inner();
                let id = Uuid::parse_str(&r.user_id).map_err(|_| AppError::unauthenticated("invalid token"))?;
                Ok(TokenSession {
                    caller: Caller::user(id, r.role),
                    expires_at_ms: r.expires_at_ms,
                    revocation_keys: r.revocation_keys,
                })
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                Err(AppError::unauthenticated("invalid or expired token"))
            }
            Err(s) => Err(AppError::unavailable(format!("verifying a token with accounts: {}", s.message()))),
        }
    }
}
