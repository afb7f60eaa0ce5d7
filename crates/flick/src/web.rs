//! `flick web`: serves the web app's built files (`web/dist`) for the edge's `/` route.
//!
//! The app routes in the browser, so a path whose last segment has no extension and names no
//! file gets `index.html` (deep links and reloads work); a missing asset is a 404, never the
//! page. Built assets carry a content hash in their names (`/assets/`) and are cached for a
//! year; everything else is revalidated on every load, so a deploy shows at once.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

/// The app loads nothing from elsewhere: scripts, styles, media and API calls (the WebSocket
/// too: CSP 3's 'self' covers ws/wss of the same host) from this origin; hls.js plays through
/// MediaSource, whose `blob:` URLs `media-src` must allow.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/// The files of a built app: `dir` must hold `index.html`.
#[derive(Clone, Debug)]
pub struct WebApp {
    dir: PathBuf,
    index: PathBuf,
}

impl WebApp {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let index = dir.join("index.html");
        anyhow::ensure!(
            index.is_file(),
            "{} has no index.html: build the web app first (cd web && npm ci && npm run build)",
            dir.display()
        );
        Ok(Self { dir: dir.to_path_buf(), index })
    }

    pub fn router(self) -> Router {
        Router::new().fallback_service(tower::service_fn(move |req: Request| {
            let app = self.clone();
            async move { Ok::<_, Infallible>(app.answer(req).await) }
        }))
    }

    async fn answer(&self, req: Request) -> Response {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")]).into_response();
        }
        let path = req.uri().path().to_owned();
        let app_route = !path.rsplit('/').next().unwrap_or_default().contains('.');
        let (parts, body) = req.into_parts();
        let files = ServeDir::new(&self.dir).precompressed_gzip().append_index_html_on_directories(true);
        let mut response = files
            .oneshot(Request::from_parts(parts.clone(), body))
            .await
            .map(IntoResponse::into_response)
            .unwrap_or_else(|e| {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the web app: {e}")).into_response()
            });
        if response.status() == StatusCode::NOT_FOUND && app_route {
            let index = ServeFile::new(&self.index).precompressed_gzip();
            response = index.oneshot(Request::from_parts(parts, axum::body::Body::empty())).await.map_or_else(
                |e| (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the web app: {e}")).into_response(),
                IntoResponse::into_response,
            );
        }
        let cache = if path.starts_with("/assets/") && response.status().is_success() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        response
    }
}

/// Serves `app` on `listen` until `shutdown`.
pub async fn serve(app: WebApp, listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, dir = %app.dir.display(), "web app ready");
    axum::serve(flick_kit::server::without_nagle(listener), app.router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(dir: &Path) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = WebApp::open(dir).unwrap().router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}")
    }

    /// A built app in `<tmp>/dist`, beside a file the server must not reach.
    fn built_app() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dist = root.path().join("dist");
        std::fs::create_dir_all(dist.join("assets")).unwrap();
        std::fs::write(dist.join("index.html"), "<!doctype html><title>Flick</title>").unwrap();
        std::fs::write(dist.join("assets/app-3f2a.js"), "console.log('flick')").unwrap();
        std::fs::write(root.path().join("secret.txt"), "not for the web").unwrap();
        (root, dist)
    }

    #[tokio::test]
    async fn app_routes_get_the_page_and_assets_are_cached_for_good() {
        let (_root, dist) = built_app();
        let base = start(&dist).await;
        let client = reqwest::Client::new();
        for route in ["/", "/watch/0195f0a2-7c1e-7d3a-9b1e-2f8c4a6d9e01", "/channel/ann/videos"] {
            let r = client.get(format!("{base}{route}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{route}");
            assert_eq!(r.headers()["cache-control"], "no-cache", "{route}");
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{route}");
            assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'self'"));
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            assert_eq!(r.text().await.unwrap(), "<!doctype html><title>Flick</title>", "{route}");
        }
        let asset = client.get(format!("{base}/assets/app-3f2a.js")).send().await.unwrap();
        assert_eq!(asset.status(), 200);
        assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(asset.text().await.unwrap(), "console.log('flick')");
    }

    #[tokio::test]
    async fn missing_files_and_paths_outside_the_app_are_not_found_not_the_page() {
        let (_root, dist) = built_app();
        let base = start(&dist).await;
        let client = reqwest::Client::new();
        let missing = client.get(format!("{base}/assets/app-gone.js")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.headers()["cache-control"], "no-cache", "a 404 is never cached for a year");
        for outside in ["/..%2Fsecret.txt", "/assets/..%2F..%2Fsecret.txt", "/%2e%2e/secret.txt"] {
            let r = client.get(format!("{base}{outside}")).send().await.unwrap();
            assert_eq!(r.status(), 404, "{outside}");
            assert_ne!(r.text().await.unwrap(), "not for the web", "{outside}");
        }
        let post = client.post(format!("{base}/")).send().await.unwrap();
        assert_eq!(post.status(), 405);
    }

    #[test]
    fn an_unbuilt_app_names_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = WebApp::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("npm run build"), "{err}");
    }
}
