//! `ml-connector healthcheck`: the container image's health probe, without curl in the image.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::Args;
use mlc_service::config::Config;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The instance's base URL; default: `server.listen` (a wildcard address is asked on
    /// loopback).
    #[arg(long)]
    pub url: Option<String>,
    /// Liveness (`/healthz`: the process answers) instead of readiness (`/readyz`: the store
    /// answers too).
    #[arg(long)]
    pub live: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// Where a process listening on `listen` is reached from the same host.
fn local_base(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

pub async fn run(args: &HealthcheckArgs, config: &Config) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| local_base(config.server.listen));
    let path = if args.live { "/healthz" } else { "/readyz" };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs.max(1)))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url} did not answer: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{url}: {status}");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}: {}", body.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_asked_on_loopback() {
        assert_eq!(
            local_base("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            local_base("[::]:9000".parse().unwrap()),
            "http://[::1]:9000"
        );
        assert_eq!(
            local_base("10.1.2.3:8080".parse().unwrap()),
            "http://10.1.2.3:8080"
        );
    }
}
