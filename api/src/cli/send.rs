//! `ml-connector send-test-event`: sign an event with the configured webhook secret and POST it.
//! The secret comes from the configuration (file or MLC__STRIPE__WEBHOOK_SECRETS), never from a
//! command-line argument, so it does not land in shell history.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use secrecy::ExposeSecret;

use mlc_service::config::Config;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Webhook URL of a running instance.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/stripe")]
    pub url: String,
    /// Event type of the generated event (ignored with --file).
    #[arg(long = "type", default_value = "charge.succeeded")]
    pub event_type: String,
    /// Send this file's bytes as the body instead of a generated event.
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// A minimal snapshot event of `event_type` with a fresh ID.
pub fn sample_event(event_type: &str) -> String {
    let id = format!("evt_test_{}", uuid::Uuid::new_v4().simple());
    let object_id = format!(
        "ch_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    serde_json::json!({
        "id": id,
        "object": "event",
        "api_version": "2026-07-29.dahlia",
        "created": mlc_core::now_millis() / 1000,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
        "data": {"object": {"id": object_id, "object": "charge"}}
    })
    .to_string()
}

pub async fn run(args: &SendArgs, config: &Config) -> anyhow::Result<()> {
    let secret = config.stripe.webhook_secrets.first().context(
        "no webhook secret configured: set MLC__STRIPE__WEBHOOK_SECRETS=whsec_… (the same as the server's)",
    )?;
    let body = match &args.file {
        Some(path) => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        None => sample_event(&args.event_type).into_bytes(),
    };
    let t = mlc_core::now_millis() / 1000;
    let header = mlc_stripe::webhook::signature_header(&[secret.expose_secret()], t, &body);
    let response = reqwest::Client::new()
        .post(&args.url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("{status} {text}");
    if !status.is_success() {
        anyhow::bail!("the server refused the event");
    }
    Ok(())
}
