//! `ml-connector sync …`: run a reference sync once and print what it did.

use clap::Subcommand;

use mlc_service::config::Config;
use mlc_service::connections;
use mlc_service::sync::{SyncContext, netsuite_to_stripe_once};

/// Reference data syncs.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// NetSuite items (reference.item_filter) and customers (reference.customer_filter) changed
    /// since the last sync become or update Stripe products and customers; their Stripe IDs are
    /// written back into NetSuite.
    NetsuiteToStripe,
}

pub async fn run(cmd: &SyncCommand, config: &Config) -> anyhow::Result<()> {
    match cmd {
        SyncCommand::NetsuiteToStripe => {
            mlc_service::telemetry::init_logging(&config.log);
            if config.reference.item_filter.is_none() && config.reference.customer_filter.is_none()
            {
                println!(
                    "nothing to sync: set reference.item_filter and/or reference.customer_filter"
                );
                return Ok(());
            }
            let (_, store) =
                connections::open_connection(config, &connections::Target::default()).await?;
            let ctx = SyncContext::from_config(config, store)?;
            let report = netsuite_to_stripe_once(&ctx).await;
            print!("{report}");
            if !report.errors.is_empty() {
                anyhow::bail!(
                    "{} record(s) or queries failed; fix them and run again (the next run resumes from them)",
                    report.errors.len()
                );
            }
            Ok(())
        }
    }
}
