//! `ml-connector sync …`: run a reference sync once and print what it did.

use clap::Subcommand;

use crate::config::Config;
use crate::startup;
use crate::sync::{SyncContext, netsuite_to_stripe_once};

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
            crate::telemetry::init_logging(&config.log);
            if config.reference.item_filter.is_none() && config.reference.customer_filter.is_none()
            {
                println!(
                    "nothing to sync: set reference.item_filter and/or reference.customer_filter"
                );
                return Ok(());
            }
            let (_, store) = startup::open_connection(config, &startup::Target::default()).await?;
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
