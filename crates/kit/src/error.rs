//! The one error model every transport shares.
//!
//! Which error type goes where:
//! - domain code (each service's `domain.rs` and the modules it calls) returns
//!   `Result<_, AppError>` directly, building client-facing failures with the constructors
//!   below (`AppError::not_found`, `bad_input(..).with_field(..)`, `conflict`, …);
//! - infrastructure errors are mapped at the call site by a small per-service function that
//!   says which dependency failed, e.g. `.map_err(db_error)` with
//!   `fn db_error(e: DbErr) -> AppError { AppError::internal(format!("media database: {e}")) }`
//!   (likewise `storage_error`, `model_error`): [`AppError::internal`] for what clients cannot
//!   fix, [`AppError::unavailable`] for a dependency that may come back. Either logs the cause
//!   once, there, and clients only see a generic message;
//! - internal `thiserror` enums (token checks, the transcode pipeline, the embedding model)
//!   stay inside their module: where one reaches a request, it is matched into an `AppError`
//!   explicitly, not through a blanket `From`, so each variant's client code is a decision;
//! - REST handlers return `Result<_, AppError>` (an axum `IntoResponse`), gRPC handlers
//!   `Result<_, tonic::Status>` with `?` (`From<AppError> for Status`), GraphQL resolvers
//!   `async_graphql::Result` with `?` or [`AppError::into_graphql`] (never via `Display`,
//!   which would drop `extensions.code`: see below).

use async_graphql::ErrorExtensions as _;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::fmt;

/// Error codes of the public contract (api.md), shared by REST, GraphQL and gRPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    PayloadTooLarge,
    /// The upload was terminated or expired (tus).
    Gone,
    /// The body is not a kind of content this route takes (an upload that is no video).
    UnsupportedMediaType,
    /// A required precondition header is missing or wrong (tus `Tus-Resumable`).
    PreconditionFailed,
    /// The body does not match the checksum the client sent (tus checksum: HTTP 460).
    ChecksumMismatch,
    MethodNotAllowed,
    Unavailable,
    Internal,
}

impl ErrorCode {
    const ALL: [ErrorCode; 14] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::BadUserInput,
        Self::Conflict,
        Self::RateLimited,
        Self::PayloadTooLarge,
        Self::Gone,
        Self::UnsupportedMediaType,
        Self::PreconditionFailed,
        Self::ChecksumMismatch,
        Self::MethodNotAllowed,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The code `text` names (`as_str`'s inverse).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Gone => "GONE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::ChecksumMismatch => "CHECKSUM_MISMATCH",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadUserInput => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Gone => StatusCode::GONE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::ChecksumMismatch => StatusCode::from_u16(460).expect("460 is a valid status"),
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::Forbidden => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::BadUserInput => tonic::Code::InvalidArgument,
            Self::Conflict => tonic::Code::AlreadyExists,
            Self::RateLimited => tonic::Code::ResourceExhausted,
            Self::PayloadTooLarge => tonic::Code::OutOfRange,
            Self::Gone => tonic::Code::NotFound,
            Self::UnsupportedMediaType => tonic::Code::InvalidArgument,
            Self::PreconditionFailed => tonic::Code::FailedPrecondition,
            Self::ChecksumMismatch => tonic::Code::DataLoss,
            Self::MethodNotAllowed => tonic::Code::Unimplemented,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }
}

/// A client-facing error: a code, a safe message, optional per-field details.
pub struct AppError {
    code: ErrorCode,
    message: String,
    /// Per-field problems for BAD_USER_INPUT: `{"email": "is not a valid address"}`.
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    retry_after_seconds: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), fields: None, retry_after_seconds: None }
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many requests, retry later")
        }
    }

    /// Logs `cause` once and returns an opaque error: internals never reach clients.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// A dependency (database, broker, cache) is unreachable: logged, retryable by clients.
    pub fn unavailable(cause: impl fmt::Display) -> Self {
        tracing::warn!(error = %cause, "dependency unavailable");
        Self::new(ErrorCode::Unavailable, "service temporarily unavailable")
    }

    /// Adds `Retry-After` (e.g. to UNAVAILABLE when a bounded resource is busy).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    pub fn with_field(mut self, field: &str, problem: impl Into<String>) -> Self {
        self.fields
            .get_or_insert_with(Default::default)
            .insert(field.to_string(), serde_json::Value::String(problem.into()));
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The REST error format: `{"error": {"code", "message", "fields"?}}` (also one item of a
    /// batch answer).
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(fields) = &self.fields {
            error["fields"] = serde_json::Value::Object(fields.clone());
        }
        serde_json::json!({ "error": error })
    }

    /// GraphQL error with `extensions.code` (and `extensions.fields`).
    pub fn into_graphql(self) -> async_graphql::Error {
        let mut err = async_graphql::Error::new(self.message);
        let code = self.code.as_str();
        let fields = self.fields;
        let retry = self.retry_after_seconds;
        err = err.extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(fields) = &fields {
                let mut map = async_graphql::indexmap::IndexMap::new();
                for (k, v) in fields {
                    map.insert(
                        async_graphql::Name::new(k),
                        async_graphql::Value::String(v.as_str().unwrap_or_default().to_string()),
                    );
                }
                ext.set("fields", async_graphql::Value::Object(map));
            }
            if let Some(s) = retry {
                ext.set("retryAfterSeconds", s);
            }
        });
        err
    }
}

impl fmt::Debug for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

// No `Display`/`Error` impl on purpose: async-graphql converts any `Display` type into an
// error without extensions, which would silently drop `extensions.code` on `?`.

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = (self.code.http_status(), axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AppError> for tonic::Status {
    fn from(err: AppError) -> Self {
        let mut status = tonic::Status::new(err.code.grpc_code(), err.message.clone());
        if let Ok(v) = err.code.as_str().parse() {
            status.metadata_mut().insert("flick-error-code", v);
        }
        status
    }
}

impl AppError {
    /// The error another Flick service answered over gRPC, when it said its code (the
    /// `flick-error-code` metadata `From<AppError> for tonic::Status` adds); its message is
    /// already safe to show.
    pub fn from_flick_status(status: &tonic::Status) -> Option<Self> {
        let code = status.metadata().get("flick-error-code")?.to_str().ok().and_then(ErrorCode::parse)?;
        Some(Self::new(code, status.message()))
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.into_graphql()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn rest_errors_have_status_code_and_json_body() {
        let err = AppError::bad_input("invalid registration").with_field("email", "is not a valid address");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
        assert_eq!(body["error"]["message"], "invalid registration");
        assert_eq!(body["error"]["fields"]["email"], "is not a valid address");
    }

    #[tokio::test]
    async fn rate_limited_errors_carry_retry_after() {
        let response = AppError::rate_limited(30).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let response = AppError::internal("connection refused to 10.0.0.5:5432 password=x").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(response).await.to_string();
        assert!(!body.contains("10.0.0.5"), "{body}");
        assert!(body.contains("INTERNAL"));
    }

    #[test]
    fn grpc_status_matches_the_code() {
        let status: tonic::Status = AppError::forbidden("not your video").into();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "not your video");
        assert_eq!(status.metadata().get("flick-error-code").unwrap(), "FORBIDDEN");
        let back = AppError::from_flick_status(&status).expect("a Flick status");
        assert_eq!((back.code(), back.message()), (ErrorCode::Forbidden, status.message()));
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(AppError::from_flick_status(&tonic::Status::internal("boom")).map(|e| e.code()), None);
        let status: tonic::Status = AppError::not_found("no such user").into();
        assert_eq!(status.code(), tonic::Code::NotFound);
    }

    #[test]
    fn graphql_errors_carry_extensions_code() {
        let err = AppError::unauthenticated("login required").into_graphql();
        let server = err.into_server_error(async_graphql::Pos::default());
        let json = serde_json::to_value(&server).unwrap();
        assert_eq!(json["extensions"]["code"], "UNAUTHENTICATED");
        assert_eq!(json["message"], "login required");
    }
}
