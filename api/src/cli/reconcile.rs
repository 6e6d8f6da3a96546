//! `ml-connector reconcile --from … --to …`: Stripe's balance against NetSuite's records for a
//! period, per currency, every difference named by its Stripe object (docs/ACCOUNTING.md,
//! "Reconciliation"). It only reads, from both systems; a non-zero exit means a difference.

use clap::Args;
use mlc_core::{Currency, Money};
use mlc_service::connections;
use mlc_service::pipeline::{ReconciliationReport, Term, period_of, window_of};
use mlc_store::sealed::MasterKey;

use mlc_service::config::Config;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// First day of the period (YYYY-MM-DD), in the connection's time zone
    /// (`posting.time_zone`).
    #[arg(long)]
    pub from: String,
    /// Last day of the period (YYYY-MM-DD), included.
    #[arg(long)]
    pub to: String,
    /// Print the report as JSON (the GraphQL `reconciliation` report's fields) instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn date(flag: &str, value: &str) -> anyhow::Result<jiff::civil::Date> {
    value
        .parse()
        .map_err(|e| anyhow::anyhow!("--{flag} `{value}`: expected YYYY-MM-DD ({e})"))
}

pub async fn run(
    args: &ReconcileArgs,
    config: &Config,
    target: &connections::Target,
) -> anyhow::Result<()> {
    let from = date("from", &args.from)?;
    let to = date("to", &args.to)?;
    let key = MasterKey::from_env()?;
    let (store, pipeline) = connections::open_pipeline(config, target, key.as_ref()).await?;
    let tz = pipeline.posting().time_zone.clone();
    let (since_ms, days) = period_of(from, to, &tz).map_err(|e| anyhow::anyhow!(e))?;
    let (since, until) = window_of(since_ms, days, &tz).map_err(|e| anyhow::anyhow!(e))?;
    if !args.json {
        eprintln!(
            "reading Stripe's balance transactions of {from} to {to} ({}), then NetSuite's records…",
            tz.iana_name().unwrap_or("UTC")
        );
    }
    let report = pipeline
        .reconcile(since, until, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"));
    store.close().await;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &format!("{from} to {to}")));
    }
    if !report.is_clean() {
        anyhow::bail!(
            "{} difference(s) between Stripe and NetSuite",
            report.differences.len().max(1)
        );
    }
    Ok(())
}

fn amount(minor: i64, currency: Currency) -> String {
    Money::new(minor, currency).to_decimal().to_string()
}

/// The report as the terminal shows it (the demo prints the same).
pub fn render(report: &ReconciliationReport, period: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  Reconciliation of {period}: {} Stripe balance transactions",
        report.scanned
    );
    let _ = writeln!(
        out,
        "  {:<4} {:<8} {:>16} {:>16} {:>12}",
        "CUR", "", "Stripe", "NetSuite", "difference"
    );
    for (currency, totals) in &report.currencies {
        let rows: [(&str, Term); 6] = [
            ("sales", totals.sales),
            ("fees", totals.fees),
            ("refunds", totals.refunds),
            ("credits", totals.credit_notes),
            ("disputes", totals.disputes),
            ("net", totals.net),
        ];
        for (i, (name, term)) in rows.iter().enumerate() {
            let code = if i == 0 {
                currency.iso_code()
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<4} {:<8} {:>16} {:>16} {:>12}",
                code,
                name,
                amount(term.stripe_minor, *currency),
                amount(term.netsuite_minor, *currency),
                amount(term.difference(), *currency)
            );
        }
    }
    if !report.payouts.is_empty() {
        let _ = writeln!(out, "  Payouts (each a NetSuite deposit):");
        for p in &report.payouts {
            let _ = writeln!(
                out,
                "    {} {:>16} {:>16}  {}",
                p.payout,
                amount(p.stripe_minor, p.currency),
                amount(p.netsuite_minor, p.currency),
                p.deposit.as_deref().unwrap_or("no deposit")
            );
        }
    }
    if report.differences.is_empty() {
        let _ = writeln!(
            out,
            "  No difference: each Stripe object is in NetSuite at its amount."
        );
    } else {
        let _ = writeln!(out, "  Differences ({}):", report.differences.len());
        for d in &report.differences {
            let _ = writeln!(
                out,
                "    {} {} {}: Stripe {}, NetSuite {} ({}): {}",
                d.stripe_object,
                d.term,
                d.currency.iso_code(),
                amount(d.stripe_minor, d.currency),
                amount(d.netsuite_minor, d.currency),
                d.netsuite_record,
                d.reason
            );
        }
    }
    if !report.not_reconciled.is_empty() {
        let _ = writeln!(
            out,
            "  Not posted by the connector (settlement currency; payouts and Stripe's own fees come later):"
        );
        for (kind, n) in &report.not_reconciled {
            let sums: Vec<String> = n
                .amounts
                .iter()
                .map(|(c, m)| format!("{} {}", c.iso_code(), amount(*m, *c)))
                .collect();
            let _ = writeln!(out, "    {kind}: {} ({})", n.count, sums.join(", "));
        }
    }
    out
}
