//! flick-load: the load generator of the load and fault suite (`make chaos`, scripts/chaos.sh).
//!
//! `flick-load mixed` seeds a few public videos, runs goose's virtual users through the edge
//! (anonymous viewers, signed-in users, uploaders), then checks the ledger of acknowledged
//! writes against the database and the API, prints the figures and appends them as one JSON
//! line to a summary file. It exits 1 when a request failed by the platform's fault outside
//! the fault windows it was given, or a write was lost.
//!
//! `flick-load revoke-check` signs a user in, logs out, and asks every route that checks tokens
//! (REST profile, GraphQL `me`) many times: each must refuse the revoked token.

mod api;
mod ledger;
mod report;
mod scenario;
mod shared;
mod verify;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(version, about = "Load and fault suite load generator for Flick")]
struct Cli {
    /// The edge (Traefik) every request goes through.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    edge: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mixed load with a ledger of acknowledged writes, then their verification.
    Mixed(MixedArgs),
    /// A revoked token is refused by every replica.
    RevokeCheck {
        /// Requests per route with the revoked token.
        #[arg(long, default_value_t = 20)]
        tries: usize,
    },
    /// Uploads clips for the worker-crash scenario, then checks each transcode completed once.
    Uploads(UploadsArgs),
}

#[derive(clap::Args)]
struct UploadsArgs {
    #[arg(long, default_value_t = 12)]
    count: usize,
    #[arg(long)]
    clip: PathBuf,
    #[arg(long)]
    database_url: String,
    #[arg(long, default_value_t = 900)]
    settle_timeout: u64,
    #[arg(long)]
    summary: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MixedArgs {
    /// This run's name in the summary (the scenario).
    #[arg(long, default_value = "mixed")]
    label: String,
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Seconds of load once every user started.
    #[arg(long, default_value_t = 60)]
    run_time: usize,
    /// Users started per second.
    #[arg(long, default_value = "50")]
    hatch_rate: String,
    /// Think time between a user's requests, milliseconds (min,max).
    #[arg(long, default_value = "500,1500", value_parser = parse_range)]
    wait_ms: (u64, u64),
    /// Think time between an uploader's uploads, milliseconds (min,max).
    #[arg(long, default_value = "10000,20000", value_parser = parse_range)]
    upload_wait_ms: (u64, u64),
    /// The clip uploaders send (a short MP4).
    #[arg(long)]
    clip: PathBuf,
    /// Public videos uploaded (and waited READY) before the load, for browsing and likes.
    #[arg(long, default_value_t = 4)]
    seed_videos: usize,
    /// The platform's database (media's tables), for the ledger checks.
    #[arg(long)]
    database_url: String,
    /// Faults injected during the run, one per line: `NAME START_MS END_MS` (Unix ms).
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Failures by the platform are tolerated from a fault's start until this long after its
    /// end (in-flight requests on a killed replica); unset: none is tolerated.
    #[arg(long)]
    tolerate_ms: Option<u64>,
    /// How long acknowledged writes may take to show everywhere, seconds.
    #[arg(long, default_value_t = 300)]
    settle_timeout: u64,
    /// A file the run's figures are appended to, one JSON line.
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text.split_once(',').ok_or("expected MIN,MAX")?;
    let (a, b) =
        (a.trim().parse::<u64>().map_err(|e| e.to_string())?, b.trim().parse::<u64>().map_err(|e| e.to_string())?);
    if a > b {
        return Err("MIN is above MAX".into());
    }
    Ok((a, b))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mixed(args) => mixed(&cli.edge, args).await,
        Command::RevokeCheck { tries } => revoke_check(&cli.edge, tries).await,
        Command::Uploads(args) => uploads(&cli.edge, args).await,
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("flick-load: {e:#}");
            std::process::exit(2);
        }
    }
}

async fn mixed(edge: &str, args: MixedArgs) -> Result<bool> {
    let api = api::Api::new(edge)?;
    let clip = std::fs::read(&args.clip).with_context(|| format!("the clip {}", args.clip.display()))?;
    let run = format!("{:x}", shared::now_ms() % 0xff_ffff_ffff);

    eprintln!("flick-load: seeding {} public videos", args.seed_videos);
    let seeder = api.sign_up(&format!("seed{run}")).await.context("seed user")?;
    let mut seeded = Vec::new();
    for i in 0..args.seed_videos {
        let video =
            api.upload(&seeder.token, &format!("seed clip {i} {run} music"), &clip).await.context("seed upload")?;
        seeded.push((seeder.token.clone(), video));
    }
    let stuck = api.wait_ready(&seeded, Duration::from_secs(300)).await;
    if !stuck.is_empty() {
        bail!("seed videos did not become READY: {stuck:?}");
    }
    let feed = api.graphql(None, "query { feed(first: 50) { edges { node { id owner { id } } } } }", json!({})).await?;
    let targets: Vec<shared::Target> = feed["feed"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some(shared::Target {
                video: e["node"]["id"].as_str()?.to_owned(),
                owner: e["node"]["owner"]["id"].as_str()?.to_owned(),
            })
        })
        .collect();
    if targets.is_empty() {
        bail!("the feed shows no video after seeding");
    }
    shared::init(run, targets, clip);

    let ms = Duration::from_millis;
    let mix = scenario::Mix {
        wait: (ms(args.wait_ms.0), ms(args.wait_ms.1)),
        upload_wait: (ms(args.upload_wait_ms.0), ms(args.upload_wait_ms.1)),
    };
    let mut attack = GooseAttack::initialize_with_config(GooseConfiguration::default())?;
    for scenario in scenario::scenarios(&mix)? {
        attack = attack.register_scenario(scenario);
    }
    eprintln!("flick-load: {} users for {} s through {edge}", args.users, args.run_time);
    let started_ms = shared::now_ms();
    let metrics = attack
        .set_default(GooseDefault::Host, edge)?
        .set_default(GooseDefault::Users, args.users)?
        .set_default(GooseDefault::HatchRate, args.hatch_rate.as_str())?
        .set_default(GooseDefault::RunTime, args.run_time)?
        .set_default(GooseDefault::Timeout, "15")?
        .set_default(GooseDefault::NoResetMetrics, true)?
        .set_default(GooseDefault::NoPrintMetrics, true)?
        .set_default(GooseDefault::NoTelnet, true)?
        .set_default(GooseDefault::NoWebSocket, true)?
        .execute()
        .await?;
    let ended_ms = shared::now_ms();

    eprintln!("flick-load: load done; verifying the ledger (up to {} s per check)", args.settle_timeout);
    let shared = shared::get();
    let ledger = std::mem::take(&mut *shared.ledger.lock().unwrap());
    let verifier = verify::Verifier {
        api: &api,
        database_url: &args.database_url,
        timeout: Duration::from_secs(args.settle_timeout),
    };
    let checks = verifier.all(&ledger).await?;
    let faults = match &args.faults {
        Some(path) => report::read_faults(path)?,
        None => Vec::new(),
    };
    let failures = shared.failures.lock().unwrap().clone();
    let run = report::Run {
        label: &args.label,
        users: args.users,
        window_ms: (started_ms, ended_ms),
        metrics: &metrics,
        failures: &failures,
        faults: &faults,
        tolerate_ms: args.tolerate_ms,
        checks: &checks,
    };
    let summary = run.summarise();
    run.print(&summary);
    if let Some(path) = &args.summary {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(file, "{summary}")?;
    }
    Ok(summary["passed"].as_bool().unwrap_or(false))
}

/// Uploads `count` clips at once and waits for them: every video READY, with each rendition
/// once, and exactly one `transcode.completed` per video in the outbox, however often its
/// worker died mid-job.
async fn uploads(edge: &str, args: UploadsArgs) -> Result<bool> {
    let api = api::Api::new(edge)?;
    let clip = std::fs::read(&args.clip).with_context(|| format!("the clip {}", args.clip.display()))?;
    let run = format!("{:x}", shared::now_ms() % 0xff_ffff_ffff);
    let owner = api.sign_up(&format!("uploader{run}")).await?;
    let mut videos = Vec::new();
    for i in 0..args.count {
        videos.push((owner.token.clone(), api.upload(&owner.token, &format!("crash clip {i} {run}"), &clip).await?));
    }
    let started = Instant::now();
    eprintln!("flick-load: {} uploads done; waiting for their transcodes", args.count);
    let stuck = api.wait_ready(&videos, Duration::from_secs(args.settle_timeout)).await;
    let settled = started.elapsed().as_secs_f64();
    let mut problems: Vec<String> = stuck.iter().map(|(video, state)| format!("video {video} is {state}")).collect();
    for (token, video) in &videos {
        let renditions = api.renditions(token, video).await?;
        let distinct: std::collections::BTreeSet<&String> = renditions.iter().collect();
        if renditions.is_empty() || distinct.len() != renditions.len() {
            problems.push(format!("video {video}: renditions {renditions:?}"));
        }
    }
    let ids: Vec<&str> = videos.iter().map(|(_, v)| v.as_str()).collect();
    let completed = verify::completions(&args.database_url, &ids)?;
    for video in &ids {
        let n = completed.get(*video).copied().unwrap_or(0);
        if n != 1 {
            problems.push(format!("video {video}: transcode.completed recorded {n} times"));
        }
    }
    for problem in &problems {
        println!("FAIL  {problem}");
    }
    println!(
        "{}  {} uploads: READY within {settled:.1} s of the last upload, each transcode completed once, renditions distinct",
        if problems.is_empty() { "ok  " } else { "FAIL" },
        args.count
    );
    if let Some(path) = &args.summary {
        use std::io::Write;
        let line = json!({"label": "worker", "uploads": args.count, "settled_s": settled, "problems": problems.len(), "passed": problems.is_empty()});
        writeln!(std::fs::OpenOptions::new().create(true).append(true).open(path)?, "{line}")?;
    }
    Ok(problems.is_empty())
}

async fn revoke_check(edge: &str, tries: usize) -> Result<bool> {
    let api = api::Api::new(edge)?;
    let account = api.sign_up(&format!("revoke{:x}", shared::now_ms() % 0xff_ffff_ffff)).await?;
    let http = reqwest::Client::new();
    let profile = http.get(api.url("/user/profile")).bearer_auth(&account.token).send().await?;
    if !profile.status().is_success() {
        bail!("the fresh token is refused before logout: HTTP {}", profile.status());
    }
    let started = Instant::now();
    let logout = http.post(api.url("/auth/logout")).bearer_auth(&account.token).send().await?;
    if !logout.status().is_success() {
        println!("FAIL  logout: HTTP {}", logout.status());
        return Ok(false);
    }
    let mut accepted = 0;
    for _ in 0..tries {
        let rest = http.get(api.url("/user/profile")).bearer_auth(&account.token).send().await?.status();
        if rest != reqwest::StatusCode::UNAUTHORIZED {
            accepted += 1;
            println!("FAIL  GET /user/profile with the revoked token: HTTP {rest}");
        }
        let me = http
            .post(api.url("/graphql"))
            .bearer_auth(&account.token)
            .json(&json!({"query": "query { me { id } }"}))
            .send()
            .await?;
        let status = me.status();
        let body = me.text().await?;
        if status != reqwest::StatusCode::UNAUTHORIZED && !body.contains("UNAUTHENTICATED") {
            accepted += 1;
            println!("FAIL  GraphQL me with the revoked token: HTTP {status} {body}");
        }
    }
    let verdict = if accepted == 0 { "ok  " } else { "FAIL" };
    println!(
        "{verdict}  revoked token refused {} of {} times (REST profile + GraphQL me, {:.1} s after logout)",
        2 * tries - accepted,
        2 * tries,
        started.elapsed().as_secs_f64()
    );
    Ok(accepted == 0)
}
