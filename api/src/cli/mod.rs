//! Command-line interface: one binary, one subcommand per job.

pub mod bench;
pub mod bench_events;
pub mod bench_fairness;
pub mod bench_pipeline;
pub mod bench_queue;
pub mod credentials;
pub mod demo;
pub mod events;
pub mod health;
pub mod mappings;
pub mod ping;
pub mod reconcile;
pub mod replay;
pub mod send;
pub mod sim;
pub mod status;
pub mod sync;
pub mod tenancy;
pub mod text;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::startup::{self, App};
use mlc_service::config::{self, Config, Sources};
use mlc_service::connections;
use mlc_service::telemetry;

/// `--version`: the package version and the git revision it was built from (`api/build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MLC_GIT_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "ml-connector",
    version = VERSION,
    about = "Posts Stripe charges and invoices into NetSuite, exactly once."
)]
pub struct Cli {
    /// Configuration file (TOML) layered over the embedded defaults; MLC__SECTION__KEY
    /// environment variables override both.
    #[arg(long, global = true, env = "MLC_CONFIG")]
    pub config: Option<PathBuf>,
    /// The tenant a command acts on (status, events, replay, mappings, ping, credentials);
    /// default: the configured `default` tenant.
    #[arg(long, global = true, env = "MLC_TENANT")]
    pub tenant: Option<String>,
    /// The tenant's connection a command acts on; default: `default`.
    #[arg(long, global = true, env = "MLC_CONNECTION")]
    pub connection: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: webhook intake, worker, health and metrics.
    Serve,
    /// Print the merged configuration with every secret redacted, or say what is wrong.
    CheckConfig,
    /// Apply database migrations and exit (serve also applies them at start).
    Migrate,
    /// Ask a running instance whether it is ready (`/readyz`) or alive (`--live`, `/healthz`);
    /// exit 0 if so, 1 if not. For container health checks: the image carries no curl.
    Healthcheck(health::HealthcheckArgs),
    /// Counts by state, the last 24 hours, and the last Stripe and NetSuite errors.
    Status(status::StatusArgs),
    /// Inspect stored events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Sign a test event with the configured webhook secret and POST it to a running instance.
    SendTestEvent(send::SendArgs),
    /// Run events through the pipeline again (after fixing what made them fail).
    Replay(replay::ReplayArgs),
    /// Stripe's balance against NetSuite for a period (sales, fees, refunds, credit notes,
    /// disputes and net per currency),
    /// every difference named by its Stripe object; non-zero exit when anything differs.
    Reconcile(reconcile::ReconcileArgs),
    /// Stripe product → NetSuite item mappings, and the products still unmapped.
    #[command(subcommand)]
    Mappings(mappings::MappingsCommand),
    /// The main job on the embedded default: both simulators and the connector in one process.
    Demo(demo::DemoArgs),
    /// Benchmarks that print figures (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check the Stripe key, webhook secrets, NetSuite login and configured NetSuite references
    /// before go-live; one line per check, non-zero exit when any fails.
    Ping,
    /// Run a local simulator of Stripe or NetSuite.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// Reference data sync: NetSuite items and customers into Stripe, once.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Secrets sealed in the store under MLC_MASTER_KEY: set, list, rotate the key.
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// The companies this service posts for.
    #[command(subcommand)]
    Tenants(tenancy::TenantsCommand),
    /// A tenant's connections (one Stripe account into one NetSuite account each).
    #[command(subcommand)]
    Connections(tenancy::ConnectionsCommand),
    /// A tenant's API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(tenancy::ApiKeysCommand),
    /// Print the GraphQL API's schema (SDL), as committed in frontend-schema/schema.graphql.
    GraphqlSchema,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Drive N signed webhooks at `serve` (a child process) over loopback, for one connection and
    /// with `--connections N` for N tenants; print events/s, latency, memory and the ratios.
    Intake(bench::IntakeArgs),
    /// The scenario through a governed NetSuite simulator: invoices/s, requests per invoice and
    /// per event, peak memory.
    Pipeline(bench_pipeline::PipelineArgs),
    /// Jobs per second through the job queue (apalis) alone, with a handler that does nothing,
    /// on SQLite and PostgreSQL.
    Queue(bench_queue::QueueArgs),
    /// A small connection's job latency while another floods the queue, against the same load
    /// alone.
    Fairness(bench_fairness::FairnessArgs),
    /// The GraphQL `events` query (`first: 50`, with audit trails) on 1,000,000 stored events,
    /// 100,000 in the measured connection: p50 and p99 of the first page, every page in turn
    /// and filtered pages.
    Events(bench_events::EventsArgs),
}

#[derive(Debug, Args)]
pub struct NoArgs {}

/// The console service for commands run beside (not inside) the service.
fn console_for(
    config: &Config,
    store: mlc_store::ConnectionStore,
) -> mlc_service::console::Console {
    mlc_service::console::Console::new(store, None, config.admin.time_zone.clone())
}

/// Loads the configuration or returns its error unchanged (it already names the key).
pub fn load_config(cli: &Cli) -> anyhow::Result<(Config, config::Merged)> {
    Ok(config::load(&Sources::from_process(cli.config.clone()))?)
}

impl Cli {
    /// The connection named by `--tenant` / `--connection`.
    pub fn target(&self) -> connections::Target {
        connections::Target {
            tenant: self.tenant.clone(),
            connection: self.connection.clone(),
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::CheckConfig => {
            let (_, merged) = load_config(&cli)?;
            println!("# configuration is valid; secrets are redacted\n");
            print!("{}", merged.redacted_toml());
            Ok(())
        }
        Command::Serve => {
            let (config, _) = load_config(&cli)?;
            let telemetry = telemetry::init(&config.log, &config.telemetry)?;
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {} (server.listen): {e}",
                        config.server.listen
                    )
                })?;
            let app = App::build(config, listener).await?;
            let shutdown = CancellationToken::new();
            startup::cancel_on_signals(shutdown.clone());
            let stopped = app.run_until_stopped(shutdown).await;
            // The exporter's thread blocks on its last HTTP request; off the async workers.
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
            stopped
        }
        Command::Migrate => {
            let (config, _) = load_config(&cli)?;
            telemetry::init_logging(&config.log);
            let store = connections::connect_store_for_command(&config).await?;
            println!("migrations applied ({:?})", store.backend());
            Ok(())
        }
        Command::Healthcheck(args) => {
            let (config, _) = load_config(&cli)?;
            health::run(args, &config).await
        }
        Command::Status(args) => {
            let (config, _) = load_config(&cli)?;
            let (_, store) = connections::open_connection(&config, &cli.target()).await?;
            status::run(args, &console_for(&config, store)).await
        }
        Command::Events(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (_, store) = connections::open_connection(&config, &cli.target()).await?;
            events::run(cmd, &console_for(&config, store)).await
        }
        Command::SendTestEvent(args) => {
            let (config, _) = load_config(&cli)?;
            send::run(args, &config).await
        }
        Command::Replay(args) => {
            let (config, _) = load_config(&cli)?;
            let (_, store) = connections::open_connection(&config, &cli.target()).await?;
            replay::run(args, &console_for(&config, store)).await
        }
        Command::Mappings(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (_, store) = connections::open_connection(&config, &cli.target()).await?;
            mappings::run(cmd, &store).await
        }
        Command::Demo(args) => {
            telemetry::init_logging(&mlc_service::config::LogConfig {
                format: mlc_service::config::LogFormat::Pretty,
                level: "error".into(),
            });
            demo::run(args).await
        }
        Command::Bench(BenchCommand::Intake(args)) => bench::intake(args).await,
        Command::Bench(BenchCommand::Pipeline(args)) => bench_pipeline::run(args).await,
        Command::Bench(BenchCommand::Queue(args)) => bench_queue::run(args).await,
        Command::Bench(BenchCommand::Fairness(args)) => bench_fairness::run(args).await,
        Command::Bench(BenchCommand::Events(args)) => bench_events::run(args).await,
        Command::Reconcile(args) => {
            let (config, _) = load_config(&cli)?;
            reconcile::run(args, &config, &cli.target()).await
        }
        Command::Ping => {
            let (config, _) = load_config(&cli)?;
            ping::run_target(config, &cli.target()).await
        }
        Command::Sim(cmd) => sim::run(cmd).await,
        Command::Sync(cmd) => sync::run(cmd, &load_config(&cli)?.0).await,
        Command::Credentials(credentials::CredentialsCommand::NewKey { path }) => {
            credentials::new_key(path)
        }
        Command::Credentials(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (_, store) = connections::open_connection(&config, &cli.target()).await?;
            credentials::run(cmd, &store).await
        }
        Command::Tenants(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (store, _) =
                connections::open_connection(&config, &connections::Target::default()).await?;
            tenancy::tenants(cmd, &store).await
        }
        Command::Connections(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (store, _) =
                connections::open_connection(&config, &connections::Target::default()).await?;
            tenancy::connections(cmd, &store, cli.tenant.as_deref()).await
        }
        Command::ApiKeys(cmd) => {
            let (config, _) = load_config(&cli)?;
            let (store, _) =
                connections::open_connection(&config, &connections::Target::default()).await?;
            tenancy::api_keys(cmd, &store, cli.tenant.as_deref()).await
        }
        Command::GraphqlSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
    }
}
