//! `GET /user/token_verify`: Traefik's ForwardAuth target.

use axum::Router;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flick_kit::AppError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct VerifyParams {
    /// `optional`: requests without a token pass anonymously (public reads).
    mode: Option<String>,
}

pub fn routes() -> Router {
    Router::new().route("/user/token_verify", get(token_verify))
}

async fn token_verify(Query(params): Query<VerifyParams>, headers: HeaderMap) -> Response {
    let has_token = headers.contains_key(header::AUTHORIZATION);
    if !has_token && params.mode.as_deref() == Some("optional") {
        return StatusCode::OK.into_response();
    }
    // No token can be valid until login exists: every presented token is refused.
    let mut response =
        AppError::unauthenticated("a valid bearer token is required").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"flick\""),
    );
    response
}
