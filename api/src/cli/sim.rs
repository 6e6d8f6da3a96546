//! `ml-connector sim …`: run the Stripe or NetSuite simulator as a local server for demos and
//! manual testing, printing what a client needs to reach it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::SecretString;

/// Which simulator to run.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the Stripe simulator (prints the base URL and a test key).
    Stripe(StripeArgs),
    /// Serve the NetSuite simulator; with --keygen, provision an M2M key pair and print the
    /// matching connector configuration.
    Netsuite(NetSuiteArgs),
}

/// `sim stripe`.
#[derive(Debug, Args)]
pub struct StripeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    pub listen: SocketAddr,
    /// API key the simulator accepts (default: a generated sk_test_ key, printed at start).
    #[arg(long, env = "MLC_SIM_STRIPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Fixes the generated API key and webhook signing secrets (for scripted tests); without it
    /// they are random at every start, so no two simulators share them.
    #[arg(long)]
    pub secret_seed: Option<u64>,
    #[command(subcommand)]
    pub action: Option<StripeAction>,
}

/// What to do besides serving.
#[derive(Debug, Subcommand)]
pub enum StripeAction {
    /// Play a SaaS month through the simulator's HTTP API and print the report as JSON.
    Scenario(ScenarioArgs),
}

/// `sim stripe scenario`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    /// Address to listen on (overrides the one given before `scenario`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Random seed of the scenario (same seed, same month).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of customers.
    #[arg(long)]
    pub customers: Option<usize>,
    /// Keep serving after the scenario until Ctrl-C.
    #[arg(long)]
    pub keep_serving: bool,
}

/// `sim netsuite`.
#[derive(Debug, Args)]
pub struct NetSuiteArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12112")]
    pub listen: SocketAddr,
    /// Initial records (JSON, see the simulator's seed.example.json); default: the example seed.
    #[arg(long)]
    pub seed_file: Option<PathBuf>,
    /// Generate and register an M2M key pair with this algorithm (PS256 or ES256).
    #[arg(long, value_parser = ["PS256", "ES256"], requires = "key_out")]
    pub keygen: Option<String>,
    /// Where to write the generated private key (PKCS#8 PEM, mode 0600).
    #[arg(long, requires = "keygen")]
    pub key_out: Option<PathBuf>,
}

pub async fn run(cmd: &SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Stripe(args) => stripe(args).await,
        SimCommand::Netsuite(args) => netsuite(args).await,
    }
}

async fn stripe(args: &StripeArgs) -> anyhow::Result<()> {
    let mut config = mlc_stripe_sim::SimConfig {
        secret_seed: args.secret_seed,
        ..mlc_stripe_sim::SimConfig::default()
    };
    if let Some(k) = &args.api_key {
        config.api_keys = vec![SecretString::from(k.clone())];
    }
    match &args.action {
        None => mlc_stripe_sim::serve(args.listen, config)
            .await
            .context("the Stripe simulator stopped"),
        Some(StripeAction::Scenario(s)) => {
            let mut scenario = mlc_stripe_sim::ScenarioConfig::default();
            if let Some(seed) = s.seed {
                scenario.seed = seed;
            }
            if let Some(n) = s.customers {
                scenario.customers = n;
            }
            mlc_stripe_sim::scenario_cli(
                s.listen.unwrap_or(args.listen),
                config,
                scenario,
                s.keep_serving,
            )
            .await
            .context("the Stripe scenario failed")?;
            Ok(())
        }
    }
}

async fn netsuite(args: &NetSuiteArgs) -> anyhow::Result<()> {
    let mut config = match &args.seed_file {
        Some(path) => mlc_netsuite_sim::SimConfig::from_seed_file(path)
            .with_context(|| format!("cannot load the seed file {}", path.display()))?,
        None => mlc_netsuite_sim::SimConfig::example().context("the example seed")?,
    };
    config.listen = Some(args.listen);
    let sim = mlc_netsuite_sim::NetSuiteSim::start(config)
        .await
        .context("cannot start the NetSuite simulator")?;
    println!("NetSuite simulator listening on {}", sim.base_url());
    println!("Account ID: {}", sim.account_id());
    println!("Token endpoint: {}", sim.token_url());
    if let (Some(alg), Some(path)) = (&args.keygen, &args.key_out) {
        let (setup, toml) = sim
            .provision_m2m(alg, path)
            .context("cannot provision the M2M key pair")?;
        println!(
            "Registered the {} M2M certificate {}; private key written to {}",
            setup.algorithm,
            setup.certificate_id,
            path.display()
        );
        println!("# connector configuration (use with --config):");
        print!("{toml}");
    }
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    Ok(())
}
