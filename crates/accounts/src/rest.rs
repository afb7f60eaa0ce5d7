//! REST routes of accounts: `/auth/*` and `/user/*` (api.md). Handlers only convert.

use crate::domain::{Accounts, ProfileChange, Registration, Verified};
use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use flick_kit::AppError;
use flick_kit::identity::{USER_ID_HEADER, USER_ROLE_HEADER, client_address};
use flick_kit::rest::{Json, bearer};
use serde::Deserialize;
use std::net::SocketAddr;

pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(accounts: Accounts) -> Router {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/openapi.json", get(openapi))
        .route("/auth/jwks.json", get(jwks))
        .route("/user/profile", get(profile).put(replace_profile).patch(patch_profile).delete(delete_profile))
        // Any method: Istio's ext_authz asks with the client request's own (the chart's
        // Istio edge); Traefik's ForwardAuth with GET.
        .route("/user/token_verify", any(token_verify))
        .route("/user/list", post(list))
        .with_state(accounts)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The public keys of access tokens (RFC 7517/8037), for verifiers outside Flick.
async fn jwks(State(accounts): State<Accounts>) -> impl IntoResponse {
    let set = flick_kit::access_token::jwks(accounts.verifying_keys().0);
    ([(header::CACHE_CONTROL, "public, max-age=300")], axum::Json(set))
}

/// The caller's verified access token, or 401 with `WWW-Authenticate`.
async fn authenticate(accounts: &Accounts, headers: &HeaderMap) -> Result<Verified, Response> {
    let Some(token) = bearer(headers) else {
        return Err(challenge(AppError::unauthenticated("a bearer token is required"), false));
    };
    accounts.verify(token).await.map_err(|e| challenge(e, true))
}

fn challenge(err: AppError, token_was_sent: bool) -> Response {
    let unauthenticated = err.code() == flick_kit::ErrorCode::Unauthenticated;
    let mut response = err.into_response();
    if unauthenticated {
        let value = if token_was_sent {
            HeaderValue::from_static("Bearer realm=\"flick\", error=\"invalid_token\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"flick\"")
        };
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

#[derive(Deserialize)]
struct RegisterBody {
    #[serde(default)]
    email: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    display_name: String,
}

async fn register(State(accounts): State<Accounts>, Json(body): Json<RegisterBody>) -> Result<Response, AppError> {
    let user = accounts
        .register(Registration {
            email: body.email,
            username: body.username,
            password: body.password,
            display_name: body.display_name,
        })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(accounts): State<Accounts>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Result<Response, AppError> {
    let address = client_address(&headers, peer.map(|Extension(ConnectInfo(addr))| addr));
    let tokens = accounts.login(&body.login, body.password, address.as_deref()).await?;
    Ok(no_store(axum::Json(tokens)))
}

/// Token responses must not be cached by anything in between (RFC 6749 §5.1).
fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct RefreshBody {
    #[serde(default)]
    refresh_token: String,
}

async fn refresh(State(accounts): State<Accounts>, Json(body): Json<RefreshBody>) -> Result<Response, AppError> {
    Ok(no_store(axum::Json(accounts.refresh(&body.refresh_token).await?)))
}

async fn logout(State(accounts): State<Accounts>, headers: HeaderMap) -> Response {
    let token = match authenticate(&accounts, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match accounts.logout(&token).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn profile(State(accounts): State<Accounts>, headers: HeaderMap) -> Response {
    match authenticate(&accounts, &headers).await {
        Ok(token) => accounts.profile(&token.user_id).await.map(axum::Json).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct ProfileBody {
    display_name: Option<String>,
    bio: Option<String>,
    /// `null` clears the avatar.
    #[serde(default, deserialize_with = "double_option")]
    avatar_url: Option<Option<String>>,
    current_password: Option<String>,
    new_password: Option<String>,
}

/// Tells a missing field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

impl ProfileBody {
    /// PUT (`replace`) clears absent fields (the display name is then required); PATCH keeps them.
    fn into_change(self, replace: bool) -> ProfileChange {
        let (display_name, bio, avatar_url) = if replace {
            (
                Some(self.display_name.unwrap_or_default()),
                Some(self.bio.unwrap_or_default()),
                Some(self.avatar_url.flatten()),
            )
        } else {
            (self.display_name, self.bio, self.avatar_url)
        };
        ProfileChange {
            display_name,
            bio,
            avatar_url,
            current_password: self.current_password,
            new_password: self.new_password,
        }
    }
}

async fn update_profile(accounts: &Accounts, headers: &HeaderMap, change: ProfileChange) -> Response {
    match authenticate(accounts, headers).await {
        Ok(token) => accounts
            .update_profile(&token.user_id, Some(&token.claims.sid), change)
            .await
            .map(axum::Json)
            .into_response(),
        Err(r) => r,
    }
}

async fn replace_profile(
    State(accounts): State<Accounts>,
    headers: HeaderMap,
    Json(body): Json<ProfileBody>,
) -> Response {
    update_profile(&accounts, &headers, body.into_change(true)).await
}

async fn patch_profile(
    State(accounts): State<Accounts>,
    headers: HeaderMap,
    Json(body): Json<ProfileBody>,
) -> Response {
    update_profile(&accounts, &headers, body.into_change(false)).await
}

#[derive(Deserialize, Default)]
struct DeleteBody {
    current_password: Option<String>,
}

/// `DELETE /user/profile` with `{"current_password": …}`: a stolen access token alone cannot
/// delete an account.
async fn delete_profile(State(accounts): State<Accounts>, headers: HeaderMap, body: Bytes) -> Response {
    let token = match authenticate(&accounts, &headers).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    // No body at all reads as no current password (answered as a missing field).
    let body: DeleteBody = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return AppError::bad_input(format!("malformed JSON body: {e}")).into_response(),
        }
    };
    match accounts.delete_account(&token, body.current_password).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct VerifyParams {
    /// `optional`: requests without a token pass anonymously (public reads).
    mode: Option<String>,
}

/// Traefik's ForwardAuth target: 200 with `X-User-Id`/`X-User-Role`, or 401.
async fn token_verify(
    State(accounts): State<Accounts>,
    Query(params): Query<VerifyParams>,
    headers: HeaderMap,
) -> Response {
    if !headers.contains_key(header::AUTHORIZATION) && params.mode.as_deref() == Some("optional") {
        return StatusCode::OK.into_response();
    }
    match authenticate(&accounts, &headers).await {
        Ok(token) => {
            let mut response = StatusCode::OK.into_response();
            let h = response.headers_mut();
            if let (Ok(id), Ok(role)) = (HeaderValue::from_str(&token.user_id), HeaderValue::from_str(&token.role)) {
                h.insert(USER_ID_HEADER, id);
                h.insert(USER_ROLE_HEADER, role);
            }
            response
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ListBody {
    #[serde(default)]
    ids: Vec<String>,
}

async fn list(State(accounts): State<Accounts>, Json(body): Json<ListBody>) -> Result<Response, AppError> {
    let users = accounts.users(&body.ids).await?;
    Ok(axum::Json(serde_json::json!({ "users": users })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for path in [
            "/auth/register",
            "/auth/login",
            "/auth/refresh",
            "/auth/logout",
            "/auth/jwks.json",
            "/user/profile",
            "/user/token_verify",
            "/user/list",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing from openapi.json");
        }
        for method in ["get", "put", "patch", "delete"] {
            assert!(doc["paths"]["/user/profile"][method].is_object(), "/user/profile {method}");
        }
    }
}
