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

    /// Reads the identity headers; a malformed id is treated as no identity.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let user_id =
            headers.get(USER_ID_HEADER).and_then(|v| v.to_str().ok()).and_then(|v| Uuid::parse_str(v.trim()).ok());
        let role = user_id.and_then(|_| headers.get(USER_ROLE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned));
        Self { user_id, role }
    }

    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Self {
        Self::from_headers(&request.metadata().clone().into_headers())
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
