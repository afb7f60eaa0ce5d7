//! `flick`: the one binary. `flick serve` runs every service in one process on embedded
//! defaults (or a subset with `--services`), `flick migrate` applies migrations,
//! `flick config` prints the effective configuration, `flick sdl` a subgraph's schema.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use flick_accounts::config::AccountsConfigExt as _;
use flick_kit::{BoundService, Config, ServerOptions};
use flick_platform::Shared;
use flick_recommender::config::RecommenderConfigExt as _;
use flick_transcoder::config::TranscoderConfigExt as _;
use services::ServiceName;
use std::net::SocketAddr;
use std::path::PathBuf;

mod services;
mod upload;
mod web;

/// glibc's malloc took ~18% of media's CPU under load (arena locks, consolidation); mimalloc's
/// thread-local heaps take most of that back (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "flick", version, about = "Flick video platform")]
struct Cli {
    /// TOML configuration file (overridden by FLICK_* environment variables).
    #[arg(long, global = true, env = "FLICK_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run services (all of them, in one process, by default).
    Serve {
        /// Comma-separated subset: accounts,media,transcoder,recommender,activity.
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
    },
    /// Upload a video file through the edge (resumes an interrupted upload of the same file).
    Upload(upload::UploadArgs),
    /// Run transcode workers only: they take jobs from the queue (scale them out on its depth).
    Worker {
        /// Jobs this process transcodes at once (default: transcoder.workers, at least 1).
        #[arg(long)]
        jobs: Option<usize>,
        /// Address of the worker's /healthz, /readyz and /metrics.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Serve the web app's built files (for the edge's `/` route).
    Web {
        /// The built app (`npm run build` in web/ writes web/dist).
        #[arg(long, default_value = "web/dist")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8085")]
        listen: SocketAddr,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[arg(long, value_delimiter = ',')]
        services: Vec<String>,
    },
    /// Print the effective configuration (secrets redacted).
    Config,
    /// Print a service's GraphQL subgraph SDL.
    Sdl { service: String },
    /// Accounts' signing keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Recommender maintenance.
    Recommender {
        #[command(subcommand)]
        action: RecommenderAction,
    },
    /// Fill the configured databases with demo data (users can log in with the seed password).
    Seed {
        #[arg(long, default_value_t = 1000)]
        videos: usize,
        #[arg(long, default_value_t = 50)]
        users: usize,
    },
}

#[derive(Subcommand)]
enum RecommenderAction {
    /// Embed every public video media lists again (over gRPC) and index it; safe beside a
    /// running recommender.
    Backfill {
        /// Media's gRPC address (default: this configuration's media port on server.host).
        #[arg(long)]
        media_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Add a new signing key (it signs from the next start; older keys still verify).
    Rotate,
    /// List the key ids; the last one signs.
    List,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Sdl { service } => {
            print!("{}", service.parse::<ServiceName>()?.sdl());
            Ok(())
        }
        Command::Config => {
            let config = load_config(cli.config.as_deref())?;
            print!("{}", config.to_redacted_toml());
            Ok(())
        }
        Command::Migrate { services } => {
            let config = load_config(cli.config.as_deref())?;
            let services = ServiceName::parse_list(&services)?;
            runtime()?.block_on(migrate(config, services))
        }
        Command::Keys { action } => {
            let config = load_config(cli.config.as_deref())?;
            let dir = config.accounts().jwt_keys_dir.unwrap_or_else(|| config.data_dir.join("keys"));
            if let KeysAction::Rotate = action {
                let (kid, _) = flick_accounts::Keyring::generate_key_file(&dir)?;
                println!("added signing key {kid} in {}; restart accounts to sign with it", dir.display());
            }
            let mut kids: Vec<String> = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_owned))
                .collect();
            kids.sort();
            for kid in &kids {
                println!("{kid}");
            }
            Ok(())
        }
        Command::Seed { videos, users } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(seed(config, users, videos))
        }
        Command::Upload(args) => runtime()?.block_on(upload::run(args)),
        Command::Web { dir, listen } => {
            let config = load_config(cli.config.as_deref())?;
            let app = web::WebApp::open(&dir)?;
            runtime()?.block_on(async {
                let _telemetry = flick_kit::telemetry::init(&config.telemetry, "flick-web")?;
                web::serve(app, listen, flick_kit::shutdown::on_signal()).await
            })
        }
        Command::Worker { jobs, listen } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(worker(config, jobs, listen))
        }
        Command::Recommender { action: RecommenderAction::Backfill { media_url } } => {
            let config = load_config(cli.config.as_deref())?;
            runtime()?.block_on(recommender_backfill(config, media_url))
        }
        Command::Serve { services } => {
            let config = load_config(cli.config.as_deref())?;
            let services = ServiceName::parse_list(&services)?;
            runtime()?.block_on(serve(config, services))
        }
    }
}

/// The configuration with every service's section, also of services this command does not run:
/// a mistake in any of them is found at start-up.
fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(Config::load(file, &ServiceName::config_sections())?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

async fn migrate(config: Config, services: Vec<ServiceName>) -> anyhow::Result<()> {
    let _telemetry = flick_kit::telemetry::init(&config.telemetry, "flick-migrate")?;
    for service in services {
        let db = flick_platform::connect_db(&config, service.as_str()).await?;
        let applied = flick_platform::db::migrate(&db, service.migrations()).await?;
        println!("{service}: {} migration(s) applied", applied.len());
        for m in applied {
            println!("  {m}");
        }
        if let Some(migrations) = service.document_migrations() {
            let docs = flick_platform::documents::Documents::connect(
                config.documents.url.as_deref(),
                &config.data_dir,
                service.as_str(),
            )
            .await?;
            let applied = docs.migrate(service.as_str(), migrations).await?;
            println!("{service}: {} document migration(s) applied", applied.len());
            for m in applied {
                println!("  {m}");
            }
        }
    }
    Ok(())
}

async fn recommender_backfill(config: Config, media_url: Option<String>) -> anyhow::Result<()> {
    let _telemetry = flick_kit::telemetry::init(&config.telemetry, "flick-recommender-backfill")?;
    let media_url = media_url.unwrap_or_else(|| format!("http://{}:{}", config.server.host, config.server.ports.media));
    let db = flick_platform::connect_db(&config, ServiceName::Recommender.as_str()).await?;
    flick_platform::db::migrate(&db, ServiceName::Recommender.migrations()).await?;
    let recommender = flick_recommender::recommender(db, &config.recommender());
    let started = std::time::Instant::now();
    let done = flick_recommender::backfill(&recommender, &media_url, 100, |p| {
        println!("{} listed, {} indexed ({:.0}s)", p.listed, p.indexed, started.elapsed().as_secs_f64());
    })
    .await?;
    println!("backfill done: {} public videos listed by media, {} indexed", done.listed, done.indexed);
    Ok(())
}

async fn seed(config: Config, users: usize, videos: usize) -> anyhow::Result<()> {
    let _telemetry = flick_kit::telemetry::init(&config.telemetry, "flick-seed")?;
    let accounts = flick_platform::connect_db(&config, ServiceName::Accounts.as_str()).await?;
    flick_platform::db::migrate(&accounts, ServiceName::Accounts.migrations()).await?;
    let media = flick_platform::connect_db(&config, ServiceName::Media.as_str()).await?;
    flick_platform::db::migrate(&media, ServiceName::Media.migrations()).await?;
    let started = std::time::Instant::now();
    let owners = flick_accounts::seed_users(&accounts, users.max(1)).await?;
    let added = flick_media::seed_videos(&media, &owners, videos).await?;
    println!(
        "seeded {} users (password {:?}) and {added} videos in {:.1}s",
        owners.len(),
        flick_accounts::SEED_PASSWORD,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn worker(config: Config, jobs: Option<usize>, listen: SocketAddr) -> anyhow::Result<()> {
    let _telemetry = flick_kit::telemetry::init(&config.telemetry, "flick-worker")?;
    flick_kit::identity::require_mesh_secret(config.identity.mesh_secret.expose());
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let shutdown = flick_kit::shutdown::on_signal();
    let jobs = jobs.unwrap_or(config.transcoder().workers).max(1);
    let shared = Shared::connect(config.clone()).await?;
    let service = flick_transcoder::build_worker(&shared, jobs).await.context("starting the transcode worker")?;
    let bound = BoundService::bind(service, listen, ServerOptions::from(&config.server)).await?;
    tracing::info!(jobs, addr = %bound.local_addr(), "transcode worker ready");
    bound.run_until_stopped(shutdown).await
}

/// Fills in the gRPC endpoint of every service this process runs, unless configured.
fn local_endpoints(config: &mut Config, services: &[ServiceName]) {
    let host = match config.server.host.as_str() {
        "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        h if h.contains(':') => format!("[{h}]"),
        h => h.to_string(),
    };
    for service in services {
        let url = Some(format!("http://{host}:{}", service.port(&config.server.ports)));
        let slot = service.endpoint(&mut config.endpoints);
        if slot.is_none() {
            *slot = url;
        }
    }
}

async fn serve(mut config: Config, services: Vec<ServiceName>) -> anyhow::Result<()> {
    local_endpoints(&mut config, &services);
    flick_kit::identity::check_mesh_secret(config.identity.mesh_secret.expose(), &config.server.host)?;
    flick_kit::identity::require_mesh_secret(config.identity.mesh_secret.expose());
    let name = if services.len() == 1 { format!("flick-{}", services[0]) } else { "flick".to_string() };
    let _telemetry = flick_kit::telemetry::init(&config.telemetry, &name)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let shutdown = flick_kit::shutdown::on_signal();
    let options = ServerOptions::from(&config.server);
    let host: std::net::IpAddr = config.server.host.parse().context("server.host is not an IP address")?;
    let shared = Shared::connect(config.clone()).await?;

    let mut bound = Vec::new();
    for service in services {
        let built = service.build(&shared).await.with_context(|| format!("starting {service}"))?;
        let port = service.port(&config.server.ports);
        bound.push(BoundService::bind(built, SocketAddr::new(host, port), options.clone()).await?);
    }
    let mut running = tokio::task::JoinSet::new();
    for svc in bound {
        running.spawn(svc.run_until_stopped(shutdown.clone()));
    }
    // One service failing stops the others: a half-running platform is worse than none.
    let mut failed = None;
    while let Some(result) = running.join_next().await {
        if let Err(e) = result.map_err(anyhow::Error::from).and_then(|r| r) {
            tracing::error!(error = %e, "service failed");
            shutdown.cancel();
            failed = Some(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
