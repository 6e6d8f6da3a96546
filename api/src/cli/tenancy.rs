//! `ml-connector tenants`, `connections` and `api-keys`: the operator's commands for the
//! companies the service posts for, their connections (one Stripe account into one NetSuite
//! account each) and their API keys.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use mlc_core::{ConnectionId, ConnectionStatus, TenantId};
use mlc_store::{ApiKeyRole, Connection, Store, TenantStore};
use secrecy::ExposeSecret as _;

use super::events::format_time;
use super::text::safe;

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add a company.
    Create {
        /// Its ID: lower-case letters, digits, `_` and `-` (e.g. `acme`).
        id: String,
        /// A name for people; default: the ID.
        #[arg(long)]
        name: Option<String>,
    },
    /// Every company, oldest first.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Connect a Stripe account to a NetSuite account for a tenant. Prints its webhook URL.
    Create {
        /// Its ID within the tenant (e.g. `production`).
        id: String,
        /// A name for people; default: the ID.
        #[arg(long)]
        name: Option<String>,
        /// Its settings: a TOML file with any of the `[stripe]`, `[netsuite]`, `[posting]` and
        /// `[reference]` keys of the configuration file (no secrets: set those with
        /// `credentials set … --tenant … --connection …`).
        #[arg(long)]
        settings: Option<PathBuf>,
        /// Post at once; by default a new connection is a draft (it stores events but posts
        /// nothing until `connections resume`).
        #[arg(long)]
        active: bool,
    },
    /// The tenant's connections.
    List,
    /// One connection: status, webhook URL, settings, health and credential names.
    Show { id: String },
    /// Stop posting (events are still stored and post on resume).
    Pause { id: String },
    /// Start posting (a draft or paused connection); waiting jobs run at once.
    Resume { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Make a key; it is shown once.
    Create {
        /// What it is for (e.g. `dashboard`, `billing-sync`).
        #[arg(long)]
        name: String,
        /// owner, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// The tenant's keys (never their secrets).
    List,
    /// Revoke a key by its ID.
    Revoke { id: String },
}

pub async fn tenants(cmd: &TenantsCommand, store: &Store) -> anyhow::Result<()> {
    match cmd {
        TenantsCommand::Create { id, name } => {
            let id = TenantId::parse(id)?;
            store
                .create_tenant(&id, name.as_deref().unwrap_or(id.as_str()))
                .await?;
            println!(
                "tenant {id} created.\nNext: `ml-connector connections create production \
                 --tenant {id} --settings connection.toml`"
            );
            Ok(())
        }
        TenantsCommand::List => {
            let tenants = store.list_tenants().await?;
            if tenants.is_empty() {
                println!("no tenants yet: `ml-connector tenants create <id>`");
            }
            for t in tenants {
                println!(
                    "{:<24} {:<32} created {}",
                    t.id,
                    safe(&t.name),
                    format_time(t.created_at)
                );
            }
            Ok(())
        }
    }
}

/// The tenant `--tenant` names (it must exist); `default` when not given.
pub async fn tenant_store(store: &Store, tenant: Option<&str>) -> anyhow::Result<TenantStore> {
    let id = TenantId::parse(tenant.unwrap_or("default")).context("--tenant")?;
    let scope = store
        .tenant_scope(&id)
        .await?
        .with_context(|| format!("no tenant `{id}`: list them with `ml-connector tenants list`"))?;
    Ok(store.tenant(&scope))
}

/// Reads a connection's settings file (TOML) as JSON, checked the way the connection will be
/// run, so a typo is an error now rather than a failed posting later.
fn read_settings(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let json = serde_json::to_value(&table)?;
    mlc_service::config::connection_config(&json)
        .with_context(|| format!("{}: not usable as connection settings", path.display()))?;
    Ok(json)
}

fn print_connection(c: &Connection, base_url: Option<&str>) {
    let path = format!("/webhooks/stripe/{}", c.route_id);
    println!("connection   {}", c.scope);
    println!("name         {}", safe(&c.name));
    println!("status       {}", c.status);
    match base_url {
        Some(base) => println!("webhook URL  {base}{path}"),
        None => println!("webhook URL  https://<this service>{path}"),
    }
    if let Some(account) = &c.netsuite_account {
        println!("NetSuite     account {account}");
    }
    println!("settings     {}", safe(&c.settings.to_string()));
    let h = &c.health;
    match (h.last_test_at, h.last_test_ok) {
        (Some(at), Some(ok)) => println!(
            "last test    {} at {}: {}",
            if ok { "passed" } else { "FAILED" },
            format_time(at),
            safe(h.last_test_message.as_deref().unwrap_or(""))
        ),
        _ => println!("last test    never"),
    }
    if let Some(at) = h.token_issued_at {
        let age_min = (mlc_core::now_millis() - at).max(0) / 60_000;
        println!(
            "NetSuite     token issued {} ({age_min} min ago; tokens live 60 min)",
            format_time(at)
        );
    }
    if let (Some(e), Some(at)) = (&h.last_error, h.last_error_at) {
        println!("last error   {} at {}", safe(e), format_time(at));
    }
}

pub async fn connections(
    cmd: &ConnectionsCommand,
    store: &Store,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let tenant = tenant_store(store, tenant).await?;
    let connection_id = |id: &str| ConnectionId::parse(id).context("connection ID");
    match cmd {
        ConnectionsCommand::Create {
            id,
            name,
            settings,
            active,
        } => {
            let id = connection_id(id)?;
            let settings = match settings {
                Some(path) => read_settings(path)?,
                None => serde_json::json!({}),
            };
            let created = mlc_service::connections::create_connection(
                store,
                &tenant,
                id,
                name.clone(),
                settings,
                *active,
            )
            .await?;
            print_connection(&created, None);
            let (t, c) = (
                created.scope.tenant_id().clone(),
                created.scope.connection_id().clone(),
            );
            println!(
                "\nNext:\n  1. In Stripe, add a webhook endpoint at the URL above; then store its \
                 signing secret:\n     ml-connector credentials set stripe-webhook --tenant {t} \
                 --connection {c} < whsec.txt\n  2. Store the Stripe key and the NetSuite key the \
                 same way (credentials set stripe / netsuite).{}",
                if *active {
                    String::new()
                } else {
                    format!(
                        "\n  3. Start posting: ml-connector connections resume {c} --tenant {t}"
                    )
                }
            );
            Ok(())
        }
        ConnectionsCommand::List => {
            let all = tenant.list_connections().await?;
            if all.is_empty() {
                println!("no connections yet: `ml-connector connections create <id> --tenant …`");
            }
            for c in all {
                println!(
                    "{:<20} {:<8} /webhooks/stripe/{}  {}",
                    c.scope.connection_id(),
                    c.status,
                    c.route_id,
                    safe(&c.name)
                );
            }
            Ok(())
        }
        ConnectionsCommand::Show { id } => {
            let id = connection_id(id)?;
            let c = tenant.get_connection(&id).await?.with_context(|| {
                format!(
                    "no connection `{id}` in tenant `{}`",
                    tenant.scope().tenant_id()
                )
            })?;
            print_connection(&c, None);
            let scoped = store.scoped(&c.scope);
            let names: Vec<String> = scoped
                .list_credential_names()
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            println!(
                "credentials  {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            );
            let counts: Vec<String> = scoped
                .job_counts()
                .await?
                .into_iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect();
            println!("jobs         {}", counts.join(", "));
            Ok(())
        }
        ConnectionsCommand::Pause { id } | ConnectionsCommand::Resume { id } => {
            let id = connection_id(id)?;
            let (status, verb) = match cmd {
                ConnectionsCommand::Pause { .. } => (ConnectionStatus::Paused, "paused"),
                _ => (ConnectionStatus::Active, "resumed"),
            };
            let Some(woken) =
                mlc_service::connections::set_status(store, &tenant, &id, status).await?
            else {
                anyhow::bail!(
                    "no connection `{id}` in tenant `{}`",
                    tenant.scope().tenant_id()
                );
            };
            println!(
                "connection {}/{id} {verb}{}",
                tenant.scope().tenant_id(),
                if status == ConnectionStatus::Active {
                    format!("; {woken} waiting job(s) run now")
                } else {
                    "; its events are stored and post when it is resumed".into()
                }
            );
            Ok(())
        }
    }
}

pub async fn api_keys(
    cmd: &ApiKeysCommand,
    store: &Store,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    let tenant = tenant_store(store, tenant).await?;
    match cmd {
        ApiKeysCommand::Create { name, role } => {
            let role = ApiKeyRole::parse(role)
                .with_context(|| format!("--role `{role}`: use owner, operator or viewer"))?;
            let made = tenant.create_api_key(name, role).await?;
            println!(
                "API key {} ({}, {}) for tenant {}:\n\n  {}\n\nIt is shown once: store it now.",
                made.info.id,
                safe(&made.info.name),
                role.as_str(),
                tenant.scope().tenant_id(),
                made.secret.expose_secret()
            );
            Ok(())
        }
        ApiKeysCommand::List => {
            let keys = tenant.list_api_keys().await?;
            if keys.is_empty() {
                println!(
                    "tenant {} has no API keys: `ml-connector api-keys create --tenant {} --name …`",
                    tenant.scope().tenant_id(),
                    tenant.scope().tenant_id()
                );
            }
            for k in keys {
                println!(
                    "{}  {:<8} {}…{}  {:<20} created {}{}",
                    k.id,
                    k.role.as_str(),
                    k.prefix,
                    k.last4,
                    safe(&k.name),
                    format_time(k.created_at),
                    match (k.revoked_at, k.last_used_at) {
                        (Some(at), _) => format!(", revoked {}", format_time(at)),
                        (None, Some(at)) => format!(", last used {}", format_time(at)),
                        (None, None) => ", never used".into(),
                    }
                );
            }
            Ok(())
        }
        ApiKeysCommand::Revoke { id } => {
            if !tenant.revoke_api_key(id).await? {
                anyhow::bail!(
                    "tenant `{}` has no active key `{id}`: list them with `ml-connector api-keys list`",
                    tenant.scope().tenant_id()
                );
            }
            println!("API key {id} revoked");
            Ok(())
        }
    }
}
