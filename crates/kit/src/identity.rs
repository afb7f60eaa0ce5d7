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
/// position alone, as tests and single-host setups without an edge do.
pub fn require_mesh_secret(secret: Option<&str>) {
    let _ = MESH_SECRET.set(secret.filter(|s| !s.is_empty()).map(str::to_owned));
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

/// Verifies access tokens with accounts (gRPC `VerifyToken`: signature, expiry, revocation),
/// for connections that carry a token instead of edge-set headers (WebSocket subscriptions
/// through the router).
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    client: flick_proto::accounts::v1::accounts_service_client::AccountsServiceClient<tonic::transport::Channel>,
}

impl TokenVerifier {
    /// Connects on first use (accounts may start later than the caller).
    pub fn connect_lazy(accounts_url: &str) -> anyhow::Result<Self> {
        let endpoint = tonic::transport::Endpoint::from_shared(accounts_url.to_string())?
            .connect_timeout(std::time::Duration::from_secs(2))
            .timeout(std::time::Duration::from_secs(5));
        Ok(Self {
            client: flick_proto::accounts::v1::accounts_service_client::AccountsServiceClient::new(
                endpoint.connect_lazy(),
            ),
        })
    }

    /// The token's user, or an error safe to show (invalid, expired, revoked, unreachable).
    pub async fn verify(&self, token: &str) -> Result<Caller, AppError> {
        let mut request =
            tonic::Request::new(flick_proto::accounts::v1::VerifyTokenRequest { access_token: token.to_string() });
        Caller::anonymous().to_grpc(&mut request);
        match self.client.clone().verify_token(request).await {
            Ok(r) => {
                let r = r.into_inner();
                let id = Uuid::parse_str(&r.user_id).map_err(|_| AppError::unauthenticated("invalid token"))?;
                Ok(Caller::user(id, r.role))
            }
            Err(s) if s.code() == tonic::Code::Unauthenticated => {
                Err(AppError::unauthenticated("invalid or expired token"))
            }
            Err(s) => Err(AppError::unavailable(format!("verifying a token with accounts: {}", s.message()))),
        }
    }
}
