//! A plain client of the edge for what is not measured: seeding the run's videos and checking
//! the ledger afterwards.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    edge: String,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub token: String,
}

impl Api {
    pub fn new(edge: &str) -> Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { http, edge: edge.trim_end_matches('/').to_owned() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.edge)
    }

    /// A query's `data`; GraphQL errors become an error with their codes.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Result<Value> {
        let mut request = self.http.post(self.url("/graphql")).json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("GraphQL answer (HTTP {status})"))?;
        if let Some(errors) = body.get("errors").filter(|e| !e.as_array().is_some_and(Vec::is_empty)) {
            bail!("GraphQL errors: {errors}");
        }
        body.get("data").cloned().ok_or_else(|| anyhow!("GraphQL answer without data: {body}"))
    }

    /// Registers and signs in a new user, waiting out the edge's rate limit on the auth routes.
    pub async fn sign_up(&self, username: &str) -> Result<Account> {
        let register = json!({"email": format!("{username}@load.test"), "username": username,
            "password": PASSWORD, "display_name": username});
        let user: Value = self.post_retrying("/auth/register", &register).await?;
        user["id"].as_str().ok_or_else(|| anyhow!("register answered {user}"))?;
        let login: Value = self.post_retrying("/auth/login", &json!({"login": username, "password": PASSWORD})).await?;
        let token = login["access_token"].as_str().ok_or_else(|| anyhow!("login answered {login}"))?.to_owned();
        Ok(Account { token })
    }

    async fn post_retrying(&self, path: &str, body: &Value) -> Result<Value> {
        for _ in 0..30 {
            let response = self.http.post(self.url(path)).json(body).send().await?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let status = response.status();
            let text = response.text().await?;
            if !status.is_success() {
                bail!("POST {path}: HTTP {status}: {text}");
            }
            return Ok(serde_json::from_str(&text)?);
        }
        bail!("POST {path}: still rate limited after 15 s")
    }

    /// createVideo, then the whole clip in one tus PATCH; the video's id.
    pub async fn upload(&self, token: &str, title: &str, clip: &[u8]) -> Result<String> {
        let created = self
            .graphql(
                Some(token),
                CREATE_VIDEO,
                json!({"i": {"title": title, "tags": ["load"], "visibility": "PUBLIC"}}),
            )
            .await?;
        let video = created["createVideo"]["video"]["id"].as_str().ok_or_else(|| anyhow!("createVideo: {created}"))?;
        let url = created["createVideo"]["upload"]["url"].as_str().ok_or_else(|| anyhow!("createVideo: {created}"))?;
        let path = upload_path(url)?;
        let response = self
            .http
            .patch(self.url(&path))
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            // The ticket's upload has a deferred length: the first PATCH declares it.
            .header("upload-length", clip.len())
            .header("content-type", "application/offset+octet-stream")
            .body(clip.to_vec())
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::NO_CONTENT {
            bail!("tus PATCH: HTTP {}", response.status());
        }
        Ok(video.to_owned())
    }

    /// The transcoder's state of a video (`READY`, `PROCESSING`, ...), as its owner sees it.
    pub async fn video_state(&self, token: &str, video: &str) -> Result<String> {
        let response = self.http.get(self.url(&format!("/video/{video}"))).bearer_auth(token).send().await?;
        let status = response.status();
        let body: Value = response.json().await.with_context(|| format!("GET /video/{video}: HTTP {status}"))?;
        body["state"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("GET /video/{video}: HTTP {status} {body}"))
    }

    /// The names of a video's renditions, as its owner sees them.
    pub async fn renditions(&self, token: &str, video: &str) -> Result<Vec<String>> {
        let response = self.http.get(self.url(&format!("/video/{video}"))).bearer_auth(token).send().await?;
        let body: Value = response.json().await?;
        Ok(body["renditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect())
    }

    /// Waits until every video is READY (or one ends FAILED); the ids not READY by the deadline.
    pub async fn wait_ready(&self, videos: &[(String, String)], timeout: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<(String, String)> = videos.to_vec();
        let mut last = Vec::new();
        while !pending.is_empty() && Instant::now() < deadline {
            let mut still = Vec::new();
            last.clear();
            for (token, video) in pending {
                match self.video_state(&token, &video).await.as_deref() {
                    Ok("READY") => {}
                    Ok("FAILED") => last.push((video, "FAILED".to_owned())),
                    Ok(state) => {
                        last.push((video.clone(), state.to_owned()));
                        still.push((token, video));
                    }
                    Err(e) => {
                        last.push((video.clone(), e.to_string()));
                        still.push((token, video));
                    }
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        last
    }
}

pub const PASSWORD: &str = "load-test-password-42";

pub const CREATE_VIDEO: &str =
    "mutation($i: CreateVideoInput!) { createVideo(input: $i) { video { id status } upload { id url } } }";

/// The edge path of an upload ticket's URL (`http://host/video/upload/ID` -> `/video/upload/ID`).
pub fn upload_path(url: &str) -> Result<String> {
    let start = url.find("/video/upload/").ok_or_else(|| anyhow!("upload URL {url}"))?;
    Ok(url[start..].to_owned())
}
