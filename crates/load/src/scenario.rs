//! The mixed load: anonymous viewers, signed-in users and uploaders, as goose scenarios. Every
//! request is named by its kind (the figures table's rows); an answer is checked the way a
//! client would (HTTP status, then GraphQL errors), and every acknowledged write goes into the
//! ledger.

use crate::api::{CREATE_VIDEO, PASSWORD, upload_path};
use crate::shared::{self, Cause};
use goose::prelude::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A signed-in virtual user.
#[derive(Debug)]
struct Session {
    id: String,
    token: String,
}

pub struct Mix {
    pub wait: (Duration, Duration),
    pub upload_wait: (Duration, Duration),
}

pub fn scenarios(mix: &Mix) -> Result<Vec<Scenario>, GooseError> {
    let (min, max) = mix.wait;
    let anonymous = scenario!("anonymous")
        .set_weight(15)?
        .set_wait_time(min, max)?
        .register_transaction(transaction!(feed).set_weight(3)?)
        .register_transaction(transaction!(search).set_weight(2)?)
        .register_transaction(transaction!(video).set_weight(3)?)
        .register_transaction(transaction!(related).set_weight(2)?);
    let signed_in = scenario!("signed_in")
        .set_weight(4)?
        .set_wait_time(min, max)?
        .register_transaction(transaction!(sign_up).set_on_start())
        .register_transaction(transaction!(like).set_weight(3)?)
        .register_transaction(transaction!(comment).set_weight(2)?)
        .register_transaction(transaction!(subscribe).set_weight(1)?)
        .register_transaction(transaction!(recommended).set_weight(2)?)
        .register_transaction(transaction!(profile).set_weight(2)?);
    let (min, max) = mix.upload_wait;
    let uploader = scenario!("uploader")
        .set_weight(1)?
        .set_wait_time(min, max)?
        .register_transaction(transaction!(sign_up).set_on_start())
        .register_transaction(transaction!(upload));
    Ok(vec![anonymous, signed_in, uploader])
}

/// What came back, as a client sees it.
enum Answer {
    Ok(Value),
    /// Refused or failed: recorded already.
    Failed,
}

/// Sends a named request; classifies the answer; records failures.
async fn send(
    user: &mut GooseUser,
    kind: &'static str,
    method: GooseMethod,
    path: &str,
    build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    expect: u16,
) -> Result<Answer, Box<TransactionError>> {
    let builder = build(user.get_request_builder(&method, path)?);
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(kind)
        .expect_status_code(expect)
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    let shared = shared::get();
    let response = match goose.response {
        Ok(response) => response,
        Err(e) => {
            let cause = if e.is_timeout() { Cause::Timeout } else { Cause::Server };
            shared.record_failure(kind, format!("{e}"), cause);
            return Ok(Answer::Failed);
        }
    };
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status != expect {
        let cause = if status >= 500 { Cause::Server } else { Cause::Refused };
        shared.record_failure(kind, format!("HTTP {status}: {}", snippet(&text)), cause);
        let _ = user.set_failure(&format!("HTTP {status}"), &mut goose.request, None, Some(&text));
        return Ok(Answer::Failed);
    }
    let body: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    if let Some(errors) = body.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
        let code = errors[0]["extensions"]["code"].as_str().unwrap_or("NO_CODE").to_owned();
        let cause = if is_refusal(&code) { Cause::Refused } else { Cause::Server };
        shared.record_failure(kind, format!("{code}: {}", snippet(&errors[0]["message"].to_string())), cause);
        let _ = user.set_failure(&code, &mut goose.request, None, Some(&text));
        return Ok(Answer::Failed);
    }
    Ok(Answer::Ok(body))
}

/// Codes that say the request itself was refused. Anything else is the platform's failure:
/// INTERNAL, UNAVAILABLE, the router's own (SUBREQUEST_HTTP_ERROR, ...), and UNAUTHENTICATED,
/// since every virtual user that signs in holds a token that is valid for the whole run.
fn is_refusal(code: &str) -> bool {
    matches!(
        code,
        "FORBIDDEN"
            | "NOT_FOUND"
            | "BAD_USER_INPUT"
            | "CONFLICT"
            | "RATE_LIMITED"
            | "PAYLOAD_TOO_LARGE"
            | "QUERY_TOO_COMPLEX"
            | "QUERY_TOO_DEEP"
            | "GRAPHQL_PARSE_FAILED"
            | "GRAPHQL_VALIDATION_FAILED"
    )
}

fn snippet(text: &str) -> String {
    text.chars().take(160).collect()
}

async fn graphql(
    user: &mut GooseUser,
    kind: &'static str,
    query: &str,
    variables: Value,
) -> Result<Answer, Box<TransactionError>> {
    let token = user.get_session_data::<Session>().map(|s| s.token.clone());
    let body = json!({"query": query, "variables": variables});
    send(
        user,
        kind,
        GooseMethod::Post,
        "/graphql",
        |b| {
            let b = b.json(&body);
            match &token {
                Some(token) => b.bearer_auth(token),
                None => b,
            }
        },
        200,
    )
    .await
}

const VIDEO_FIELDS: &str = "id title likeCount commentCount viewCount owner { id username }";

async fn feed(user: &mut GooseUser) -> TransactionResult {
    let query = format!("query {{ feed(first: 20) {{ edges {{ node {{ {VIDEO_FIELDS} }} }} }} }}");
    graphql(user, "feed", &query, json!({})).await?;
    Ok(())
}

async fn search(user: &mut GooseUser) -> TransactionResult {
    let words = ["load", "clip", "chaos", "music", "seed"];
    let word = words[rand::random_range(0..words.len())];
    let query =
        format!("query($q: String) {{ search(query: $q, first: 20) {{ edges {{ node {{ {VIDEO_FIELDS} }} }} }} }}");
    graphql(user, "search", &query, json!({"q": word})).await?;
    Ok(())
}

async fn video(user: &mut GooseUser) -> TransactionResult {
    let id = shared::get().target().video.clone();
    let query = format!(
        "query($id: ID!) {{ video(id: $id) {{ {VIDEO_FIELDS} description tags playback {{ hlsUrl durationSeconds }} }} }}"
    );
    graphql(user, "video", &query, json!({"id": id})).await?;
    Ok(())
}

async fn related(user: &mut GooseUser) -> TransactionResult {
    let id = shared::get().target().video.clone();
    let query = "query($id: ID!) { video(id: $id) { id related(first: 10) { id title } } }";
    graphql(user, "related", query, json!({"id": id})).await?;
    Ok(())
}

/// Registers and signs in through the edge, as a new user of the app would.
async fn sign_up(user: &mut GooseUser) -> TransactionResult {
    let name = shared::get().next_user_name("u");
    let register =
        json!({"email": format!("{name}@load.test"), "username": name, "password": PASSWORD, "display_name": name});
    // A refused sign-up (the edge's rate limit on /auth) is tried again: this user has no
    // other way in.
    let mut id = None;
    for _ in 0..20 {
        if let Answer::Ok(body) =
            send(user, "register", GooseMethod::Post, "/auth/register", |b| b.json(&register), 201).await?
        {
            id = body["id"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(id) = id else { return Ok(()) };
    let login = json!({"login": name, "password": PASSWORD});
    for _ in 0..20 {
        if let Answer::Ok(body) = send(user, "login", GooseMethod::Post, "/auth/login", |b| b.json(&login), 200).await?
        {
            if let Some(token) = body["access_token"].as_str() {
                user.set_session_data(Session { id, token: token.to_owned() });
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

fn session(user: &GooseUser) -> Option<(String, String)> {
    user.get_session_data::<Session>().map(|s| (s.id.clone(), s.token.clone()))
}

async fn like(user: &mut GooseUser) -> TransactionResult {
    let Some((me, _)) = session(user) else { return Ok(()) };
    let shared = shared::get();
    let video = shared.target().video.clone();
    let liked = shared.ledger.lock().unwrap().believed_like(&me, &video);
    let (kind, mutation, want) = if liked { ("unlike", "unlikeVideo", false) } else { ("like", "likeVideo", true) };
    let query = format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id likeCount viewerHasLiked }} }}");
    let state = match graphql(user, kind, &query, json!({"id": video})).await? {
        Answer::Ok(_) => Some(want),
        Answer::Failed => None,
    };
    shared.ledger.lock().unwrap().like(&me, &video, state);
    Ok(())
}

async fn comment(user: &mut GooseUser) -> TransactionResult {
    if session(user).is_none() {
        return Ok(());
    }
    let shared = shared::get();
    let video = shared.target().video.clone();
    let query = "mutation($v: ID!, $b: String!) { addComment(videoId: $v, body: $b) { id } }";
    let body = format!("comment from a load test, run {}", shared.run);
    if let Answer::Ok(answer) = graphql(user, "comment", query, json!({"v": video, "b": body})).await?
        && let Some(id) = answer["data"]["addComment"]["id"].as_str()
    {
        shared.ledger.lock().unwrap().comments.push((video, id.to_owned()));
    }
    Ok(())
}

async fn subscribe(user: &mut GooseUser) -> TransactionResult {
    let Some((me, _)) = session(user) else { return Ok(()) };
    let shared = shared::get();
    let channel = shared.target().owner.clone();
    let subscribed = shared.ledger.lock().unwrap().believed_subscribed(&me, &channel);
    let (kind, mutation, want) =
        if subscribed { ("unsubscribe", "unsubscribe", false) } else { ("subscribe", "subscribe", true) };
    let query =
        format!("mutation($c: ID!) {{ {mutation}(channelId: $c) {{ id subscriberCount viewerIsSubscribed }} }}");
    let state = match graphql(user, kind, &query, json!({"c": channel})).await? {
        Answer::Ok(_) => Some(want),
        Answer::Failed => None,
    };
    shared.ledger.lock().unwrap().subscribe(&me, &channel, state);
    Ok(())
}

async fn recommended(user: &mut GooseUser) -> TransactionResult {
    if session(user).is_none() {
        return Ok(());
    }
    graphql(user, "recommendedForMe", "query { recommendedForMe(first: 10) { id title } }", json!({})).await?;
    Ok(())
}

async fn profile(user: &mut GooseUser) -> TransactionResult {
    let Some((_, token)) = session(user) else { return Ok(()) };
    send(user, "profile", GooseMethod::Get, "/user/profile", |b| b.bearer_auth(&token), 200).await?;
    Ok(())
}

/// createVideo, then the clip in one tus PATCH: a completed upload goes into the ledger.
async fn upload(user: &mut GooseUser) -> TransactionResult {
    let Some((_, token)) = session(user) else { return Ok(()) };
    let shared = shared::get();
    let title = format!("load clip {}", shared.run);
    let created =
        match graphql(user, "createVideo", CREATE_VIDEO, json!({"i": {"title": title, "tags": ["load"]}})).await? {
            Answer::Ok(body) => body,
            Answer::Failed => return Ok(()),
        };
    let ticket = &created["data"]["createVideo"];
    let (Some(video), Some(Ok(path))) =
        (ticket["video"]["id"].as_str(), ticket["upload"]["url"].as_str().map(upload_path))
    else {
        shared.record_failure("createVideo", format!("no upload ticket: {created}"), Cause::Server);
        return Ok(());
    };
    let clip = shared.clip.clone();
    let length = clip.len();
    let patch = |b: reqwest::RequestBuilder| {
        // The ticket's upload has a deferred length: the first PATCH declares it.
        b.bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("upload-length", length)
            .header("content-type", "application/offset+octet-stream")
            .body(clip)
    };
    if let Answer::Ok(_) = send(user, "upload", GooseMethod::Patch, &path, patch, 204).await? {
        shared.ledger.lock().unwrap().uploads.push((token.clone(), video.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_refusal;

    #[test]
    fn router_and_server_codes_are_the_platforms_failures() {
        for code in ["INTERNAL", "UNAVAILABLE", "NO_CODE", "SUBREQUEST_HTTP_ERROR", "UNAUTHENTICATED"] {
            assert!(!is_refusal(code), "{code}");
        }
        for code in ["NOT_FOUND", "BAD_USER_INPUT", "RATE_LIMITED", "GRAPHQL_VALIDATION_FAILED"] {
            assert!(is_refusal(code), "{code}");
        }
    }
}
