//! Both simulators and the connector in one process: what `demo`, `bench pipeline` and the
//! end-to-end tests run. Built through the same [`crate::startup::App`] as `serve`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlc_netsuite_sim::{NetSuiteSim, RecordType};
use mlc_store::{ConnectionStore, JobState};
use mlc_stripe_sim::{CatalogHook, StripeSim};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::startup::App;
use mlc_core::{ConnectionId, ConnectionStatus, TenantId};
use mlc_service::config::{self, Config, Sources};
use mlc_store::NewConnection;
use mlc_store::sealed::MasterKey;
use secrecy::ExposeSecret as _;

/// How to set the stack up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub database_url: String,
    /// Directory for the generated NetSuite private key.
    pub key_dir: PathBuf,
    /// `net` or `gross`.
    pub fees: String,
    /// NetSuite simulator: added latency per request and account concurrency limit.
    pub netsuite_latency: Duration,
    pub netsuite_concurrency_limit: usize,
    /// The connector's NetSuite concurrency (its share of the account limit).
    pub netsuite_concurrency: usize,
    pub worker_concurrency: usize,
    /// First retry delay of an invoice waiting for an unmapped product.
    pub unmapped_retry_secs: u64,
    /// Adversarial Stripe delivery, and Stripe's retry schedule for failed deliveries.
    pub delivery_faults: mlc_stripe_sim::DeliveryFaults,
    pub delivery: mlc_stripe_sim::DeliveryConfig,
    /// How the Stripe simulator departs from Stripe's current dialect (default: not at all).
    pub stripe_dialect: mlc_stripe_sim::Dialect,
    /// The client-side Stripe request rate of every connection (default: the key's mode's).
    pub stripe_rate_limit_per_sec: Option<u32>,
    /// Extra `MLC__…` settings.
    pub extra_env: Vec<(String, String)>,
    /// Where the connector listens (default: a free port on 127.0.0.1).
    pub listen: Option<SocketAddr>,
}

impl StackOptions {
    pub fn new(database_url: impl Into<String>, key_dir: impl Into<PathBuf>) -> Self {
        StackOptions {
            database_url: database_url.into(),
            key_dir: key_dir.into(),
            fees: "net".into(),
            netsuite_latency: Duration::ZERO,
            netsuite_concurrency_limit: 5,
            netsuite_concurrency: 5,
            worker_concurrency: 8,
            unmapped_retry_secs: 900,
            delivery_faults: mlc_stripe_sim::DeliveryFaults::default(),
            delivery: mlc_stripe_sim::DeliveryConfig::default(),
            stripe_dialect: mlc_stripe_sim::Dialect::default(),
            stripe_rate_limit_per_sec: None,
            extra_env: Vec::new(),
            listen: None,
        }
    }
}

/// NetSuite items the stack creates for the adjustment lines.
#[derive(Debug, Clone)]
pub struct StackItems {
    pub fee: u64,
    pub discount: u64,
    pub tax: u64,
    pub default: u64,
}

/// The running stack.
pub struct Stack {
    pub stripe: mlc_stripe_sim::RunningSim,
    pub netsuite: mlc_netsuite_sim::RunningSim,
    pub config: Config,
    /// The configuration as `MLC__…` variables: a CLI child process given them works on this
    /// stack's default connection.
    pub env: Vec<(String, String)>,
    pub addr: SocketAddr,
    /// The default connection's view of the store.
    pub store: ConnectionStore,
    pub items: StackItems,
    /// The master key the connector seals credentials with (MLC_MASTER_KEY, or a fresh one).
    pub master_key: MasterKey,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A Stripe simulator seed of its own for a company's account, stable across runs.
fn account_seed(tenant: &str, connection: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{tenant}/{connection}").as_bytes());
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The example seed's chargebacks account (`posting.dispute_account`) and Accounts Receivable
/// (`posting.receivables_account`).
pub const DISPUTE_ACCOUNT: &str = "6";
pub const RECEIVABLES_ACCOUNT: &str = "3";
/// The example seed's checking account, where Stripe pays out (`posting.payout_bank_account`).
pub const PAYOUT_BANK_ACCOUNT: &str = "1";

/// Seed currencies of the NetSuite simulator (internal IDs in its example seed).
pub const CURRENCIES: &str = "USD=1,EUR=2,JPY=3,KWD=4,GBP=5";

/// The two simulators, wired for a connector that will listen at `connector_addr`.
pub struct Sims {
    pub stripe: mlc_stripe_sim::RunningSim,
    pub netsuite: mlc_netsuite_sim::RunningSim,
    pub items: StackItems,
    /// The connector's configuration as `MLC__…` variables (also usable for a child process).
    pub env: Vec<(String, String)>,
}

impl Sims {
    pub async fn start(opts: &StackOptions, connector_addr: SocketAddr) -> anyhow::Result<Sims> {
        let (netsuite, setup, key_path, items) =
            start_netsuite(opts, &opts.key_dir.join("netsuite-m2m.pem")).await?;

        let stripe = StripeSim::start(mlc_stripe_sim::SimConfig {
            delivery_faults: opts.delivery_faults,
            delivery: opts.delivery,
            dialect: opts.stripe_dialect.clone(),
            ..mlc_stripe_sim::SimConfig::default()
        })
        .await?;

        // Registering the connector's URL with Stripe returns the signing secret it needs.
        let secret = register_endpoint(
            &stripe.base_url,
            stripe.api_key_str(),
            &format!("http://{connector_addr}/webhooks/stripe"),
        )
        .await?;

        let mut env: Vec<(String, String)> = vec![
            ("DATABASE__URL", opts.database_url.clone()),
            ("SERVER__LISTEN", connector_addr.to_string()),
            ("STRIPE__WEBHOOK_SECRETS", secret),
            ("STRIPE__API_KEY", stripe.api_key_str().to_string()),
            ("STRIPE__API_BASE", stripe.base_url.clone()),
            ("NETSUITE__ACCOUNT_ID", netsuite.account_id().to_string()),
            ("NETSUITE__BASE_URL", netsuite.base_url().to_string()),
            ("NETSUITE__CLIENT_ID", setup.client_id.clone()),
            ("NETSUITE__CERTIFICATE_ID", setup.certificate_id.clone()),
            ("NETSUITE__PRIVATE_KEY_PATH", key_path.display().to_string()),
            (
                "NETSUITE__CONCURRENCY",
                opts.netsuite_concurrency.to_string(),
            ),
            ("WORKER__CONCURRENCY", opts.worker_concurrency.to_string()),
            ("WORKER__POLL_INTERVAL_MS", "100".to_string()),
            ("WORKER__HEARTBEAT_SECS", "1".to_string()),
            ("SERVER__SHUTDOWN_GRACE_SECS", "5".to_string()),
            ("POSTING__FEES", opts.fees.clone()),
            ("POSTING__TIME_ZONE", "UTC".to_string()),
            ("POSTING__SUBSIDIARY", "1".to_string()),
            ("POSTING__FEE_ITEM", items.fee.to_string()),
            ("POSTING__DISCOUNT_ITEM", items.discount.to_string()),
            ("POSTING__TAX_ITEM", items.tax.to_string()),
            ("POSTING__DEFAULT_ITEM", items.default.to_string()),
            ("POSTING__PAYMENT_ACCOUNT", "2".to_string()),
            ("POSTING__FEE_EXPENSE_ACCOUNT", "5".to_string()),
            ("POSTING__FEE_CLEARING_ACCOUNT", "2".to_string()),
            ("POSTING__DISPUTE_ACCOUNT", DISPUTE_ACCOUNT.to_string()),
            (
                "POSTING__RECEIVABLES_ACCOUNT",
                RECEIVABLES_ACCOUNT.to_string(),
            ),
            (
                "POSTING__PAYOUT_BANK_ACCOUNT",
                PAYOUT_BANK_ACCOUNT.to_string(),
            ),
            ("POSTING__CURRENCIES", CURRENCIES.to_string()),
            (
                "POSTING__UNMAPPED_RETRY_SECS",
                opts.unmapped_retry_secs.to_string(),
            ),
            ("LOG__LEVEL", "warn".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("MLC__{k}"), v))
        .collect();
        if let Some(rate) = opts.stripe_rate_limit_per_sec {
            env.push(("MLC__STRIPE__RATE_LIMIT_PER_SEC".into(), rate.to_string()));
        }
        env.extend(opts.extra_env.iter().cloned());
        Ok(Sims {
            stripe,
            netsuite,
            items,
            env,
        })
    }

    /// The connector configuration for these simulators.
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(config::load(&Sources {
            file: None,
            env: self.env.clone(),
        })?
        .0)
    }
}

/// A NetSuite simulator with the example seed (currencies, subsidiaries, accounts), an M2M
/// integration whose private key is written to `key_path`, and the adjustment items.
async fn start_netsuite(
    opts: &StackOptions,
    key_path: &Path,
) -> anyhow::Result<(
    mlc_netsuite_sim::RunningSim,
    mlc_netsuite_sim::M2mSetup,
    PathBuf,
    StackItems,
)> {
    // NetSuite: the example seed (currencies, subsidiaries, accounts) plus adjustment items.
    let netsuite = NetSuiteSim::start(netsuite_config(opts)?).await?;
    std::fs::create_dir_all(&opts.key_dir)
        .with_context(|| format!("cannot create {}", opts.key_dir.display()))?;
    let key_path = key_path.to_path_buf();
    let (setup, _) = netsuite.provision_m2m("PS256", &key_path)?;
    let items = adjustment_items(netsuite.handle())?;
    Ok((netsuite, setup, key_path, items))
}

/// The NetSuite simulator's configuration: the example seed, the options' latency and limit.
fn netsuite_config(opts: &StackOptions) -> anyhow::Result<mlc_netsuite_sim::SimConfig> {
    let mut ns_config = mlc_netsuite_sim::SimConfig::example()?;
    ns_config.latency = opts.netsuite_latency;
    ns_config.concurrency_limit = opts.netsuite_concurrency_limit;
    Ok(ns_config)
}

/// Creates the adjustment lines' items (fees, discounts, tax, the default item).
fn adjustment_items(h: &mlc_netsuite_sim::SimHandle) -> anyhow::Result<StackItems> {
    let item = |t: RecordType, name: &str| -> anyhow::Result<u64> {
        h.create(
            t,
            json!({"itemId": name, "displayName": name, "subsidiary": {"id": "1"}, "includeChildren": true}),
        )
        .map_err(|e| anyhow::anyhow!("cannot create NetSuite item {name}: {e}"))
    };
    Ok(StackItems {
        fee: item(RecordType::ServiceSaleItem, "Stripe processing fees")?,
        discount: item(RecordType::DiscountItem, "Stripe discounts")?,
        tax: item(RecordType::ServiceSaleItem, "Sales tax collected by Stripe")?,
        default: item(
            RecordType::ServiceSaleItem,
            "Online sale (unspecified product)",
        )?,
    })
}

/// A Stripe and a NetSuite simulator connected to nothing: what a person connects with the
/// onboarding wizard (`demo --dashboard`'s "try the wizard"). The NetSuite simulator has the
/// example seed under its own account ID, the adjustment items, and no M2M integration (the
/// wizard's certificate is uploaded to it, `POST /_sim/m2m/certificates`); no webhook endpoint
/// is registered with the Stripe simulator.
pub struct UnconnectedSims {
    pub stripe: mlc_stripe_sim::RunningSim,
    pub netsuite: mlc_netsuite_sim::RunningSim,
    pub items: StackItems,
}

impl UnconnectedSims {
    pub async fn start(
        opts: &StackOptions,
        netsuite_account_id: &str,
    ) -> anyhow::Result<UnconnectedSims> {
        let mut ns_config = netsuite_config(opts)?;
        ns_config.account_id = netsuite_account_id.to_string();
        let netsuite = NetSuiteSim::start(ns_config).await?;
        let items = adjustment_items(netsuite.handle())?;
        let stripe = StripeSim::start(mlc_stripe_sim::SimConfig {
            dialect: opts.stripe_dialect.clone(),
            ..mlc_stripe_sim::SimConfig::default()
        })
        .await?;
        Ok(UnconnectedSims {
            stripe,
            netsuite,
            items,
        })
    }

    /// Connection settings for these simulators, all but the NetSuite credentials' IDs
    /// (`netsuite.account_id`, `client_id`, `certificate_id`: the wizard sets those): the two
    /// base URLs and the posting references of the example seed.
    pub fn preset_settings(&self) -> Value {
        json!({
            "stripe": { "api_base": self.stripe.base_url },
            "netsuite": { "base_url": self.netsuite.base_url().to_string() },
            "posting": {
                "subsidiary": "1",
                "fee_item": self.items.fee.to_string(),
                "discount_item": self.items.discount.to_string(),
                "tax_item": self.items.tax.to_string(),
                "default_item": self.items.default.to_string(),
                "payment_account": "2",
                "fee_expense_account": "5",
                "fee_clearing_account": "2",
                "dispute_account": DISPUTE_ACCOUNT,
                "receivables_account": RECEIVABLES_ACCOUNT,
                "payout_bank_account": PAYOUT_BANK_ACCOUNT,
                "currencies": CURRENCIES.split(',').collect::<Vec<_>>(),
            },
        })
    }
}

/// Registers `url` as a webhook endpoint of every event with the Stripe simulator; returns the
/// endpoint's signing secret.
async fn register_endpoint(base_url: &str, api_key: &str, url: &str) -> anyhow::Result<String> {
    let endpoint: Value = reqwest::Client::new()
        .post(format!("{base_url}/v1/webhook_endpoints"))
        .bearer_auth(api_key)
        .form(&[("url", url), ("enabled_events[]", "*")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(endpoint["secret"]
        .as_str()
        .context("the Stripe simulator returned no webhook secret")?
        .to_string())
}

impl Stack {
    pub async fn start(opts: StackOptions) -> anyhow::Result<Stack> {
        // The connector listens first, so its URL can be registered with Stripe.
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let Sims {
            stripe,
            netsuite,
            items,
            env,
        } = Sims::start(&opts, addr).await?;
        let (config, _) = config::load(&Sources {
            file: None,
            env: env.clone(),
        })?;
        let master_key = MasterKey::from_env()?.unwrap_or_else(MasterKey::generate);
        let app = App::build_keyed(config.clone(), listener, Some(master_key.clone())).await?;
        let store = app.store().clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Ok(Stack {
            stripe,
            netsuite,
            config,
            env,
            addr,
            store,
            items,
            master_key,
            stop,
            task: Some(task),
        })
    }

    /// Another company on this connector, connected the way an operator would: a tenant and an
    /// active connection with its own NetSuite simulator (and its own Stripe simulator, unless
    /// `share_stripe` names another company's: the same Stripe account connected twice), its
    /// settings stored as connection settings, its keys sealed as its credentials, and Stripe
    /// delivering to its own webhook route.
    pub async fn add_tenant(
        &self,
        tenant: &str,
        connection: &str,
        opts: &StackOptions,
        share_stripe: Option<&mlc_stripe_sim::RunningSim>,
    ) -> anyhow::Result<TenantSims> {
        let store = self.store.store();
        let tenant_id = TenantId::parse(tenant)?;
        let tenant_scope = store.ensure_tenant(&tenant_id, tenant).await?;
        let tenant_store = store.tenant(&tenant_scope);
        let draft = NewConnection {
            id: ConnectionId::parse(connection)?,
            name: format!("{tenant} {connection}"),
            status: ConnectionStatus::Draft,
            settings: json!({}),
            netsuite_account: None,
        };
        let made = tenant_store.create_connection(&draft).await?;
        let (netsuite, setup, _key_path, items) = start_netsuite(
            opts,
            &opts
                .key_dir
                .join(format!("netsuite-m2m-{tenant}-{connection}.pem")),
        )
        .await?;
        let own_stripe = match share_stripe {
            Some(_) => None,
            None => Some(
                StripeSim::start(mlc_stripe_sim::SimConfig {
                    delivery_faults: opts.delivery_faults,
                    delivery: opts.delivery,
                    dialect: opts.stripe_dialect.clone(),
                    // Stripe's IDs are unique across accounts: each company's simulator draws
                    // its own, or two companies would share `in_…` and `ch_…` IDs.
                    seed: account_seed(tenant, connection),
                    ..mlc_stripe_sim::SimConfig::default()
                })
                .await?,
            ),
        };
        let stripe = share_stripe
            .or(own_stripe.as_ref())
            .context("a Stripe simulator")?;
        let secret = register_endpoint(
            &stripe.base_url,
            stripe.api_key_str(),
            &format!("http://{}/webhooks/stripe/{}", self.addr, made.route_id),
        )
        .await?;
        let mut stripe_settings = json!({ "api_base": stripe.base_url });
        if let Some(rate) = opts.stripe_rate_limit_per_sec {
            stripe_settings["rate_limit_per_sec"] = json!(rate);
        }
        let settings = json!({
            "stripe": stripe_settings,
            "netsuite": {
                "account_id": netsuite.account_id(),
                "base_url": netsuite.base_url().to_string(),
                "client_id": setup.client_id,
                "certificate_id": setup.certificate_id,
                "concurrency": opts.netsuite_concurrency as i64,
            },
            "posting": {
                "fees": opts.fees,
                "time_zone": "UTC",
                "subsidiary": "1",
                "fee_item": items.fee.to_string(),
                "discount_item": items.discount.to_string(),
                "tax_item": items.tax.to_string(),
                "default_item": items.default.to_string(),
                "payment_account": "2",
                "fee_expense_account": "5",
                "fee_clearing_account": "2",
                "dispute_account": DISPUTE_ACCOUNT,
                "receivables_account": RECEIVABLES_ACCOUNT,
                "payout_bank_account": PAYOUT_BANK_ACCOUNT,
                "currencies": CURRENCIES.split(',').collect::<Vec<_>>(),
                "unmapped_retry_secs": opts.unmapped_retry_secs as i64,
            },
        });
        config::connection_config(&settings).context("the tenant's connection settings")?;
        let scoped = store.scoped(&made.scope);
        use mlc_service::credentials::names;
        for (name, value) in [
            (names::STRIPE_API_KEY, stripe.api_key_str().to_string()),
            (names::STRIPE_WEBHOOK_SECRETS, secret),
            (
                names::NETSUITE_PRIVATE_KEY,
                setup.private_key_pem.expose_secret().to_string(),
            ),
        ] {
            scoped
                .store_secret(&self.master_key, name, value.as_bytes())
                .await?;
        }
        tenant_store
            .upsert_connection(&NewConnection {
                settings,
                netsuite_account: Some(netsuite.account_id().to_ascii_uppercase()),
                ..draft
            })
            .await?;
        tenant_store
            .set_connection_status(
                &made.scope.connection_id().clone(),
                ConnectionStatus::Active,
            )
            .await?;
        Ok(TenantSims {
            store: scoped,
            route: made.route_id,
            stripe_handle: stripe.handle.clone(),
            stripe: own_stripe,
            netsuite,
            items,
        })
    }

    /// A scenario hook creating the NetSuite items of every product but the unmapped one.
    pub fn catalog_hook(&self) -> CatalogHook {
        catalog_hook(self.netsuite.handle().clone(), false)
    }

    /// Waits until Stripe has delivered everything and no job is queued or running (waiting
    /// jobs may remain). False on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        wait_idle(&self.stripe.handle, &self.store, timeout).await
    }

    /// The connector's NetSuite invoices as the simulator holds them.
    pub fn netsuite_invoices(&self) -> Vec<NsInvoice> {
        netsuite_invoices(self.netsuite.handle(), self.items.fee)
    }

    /// Records of a type in the NetSuite simulator.
    pub fn netsuite_count(&self, t: RecordType) -> usize {
        self.netsuite.handle().count(t)
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

/// Companies for a `serve` child process beside the default one `sims` wires: each a tenant
/// (`name`, connection `main`) with its own Stripe and NetSuite simulators and its own NetSuite
/// account ID (`<NAME>_SB1`), connected the way an operator would on an in-process connector
/// that listens on `listen` (so Stripe delivers to it there) and stops before returning. Returns
/// them and the child's environment: `sims.env` plus the master key file their credentials are
/// sealed under (written into `dir`).
pub async fn tenants_for_child(
    sims: &Sims,
    opts: &StackOptions,
    dir: &Path,
    listen: SocketAddr,
    names: &[&str],
) -> anyhow::Result<(Vec<TenantSims>, Vec<(String, String)>)> {
    let mut tenant_opts = opts.clone();
    tenant_opts.key_dir = dir.join("tenants");
    std::fs::create_dir_all(&tenant_opts.key_dir)?;
    tenant_opts.listen = Some(listen);
    let stack = Stack::start(tenant_opts.clone()).await?;
    let mut tenants = Vec::with_capacity(names.len());
    for name in names {
        let tenant = stack.add_tenant(name, "main", &tenant_opts, None).await?;
        let account = format!("{}_SB1", name.to_ascii_uppercase().replace('-', ""));
        tenant.use_own_account(&account).await?;
        tenants.push(tenant);
    }
    let key_file = dir.join("master.key");
    stack.master_key.write_new_file(&key_file)?;
    stack.stop().await?;
    let mut env = sims.env.clone();
    env.push((
        mlc_store::sealed::MASTER_KEY_FILE_ENV.to_string(),
        key_file.display().to_string(),
    ));
    Ok((tenants, env))
}

/// Another company on the stack's connector (see [`Stack::add_tenant`]).
pub struct TenantSims {
    /// Its connection's view of the store.
    pub store: ConnectionStore,
    /// Its webhook route (`/webhooks/stripe/{route}`).
    pub route: mlc_core::WebhookRouteId,
    /// Its own Stripe simulator; `None` when it connected another company's Stripe account.
    pub stripe: Option<mlc_stripe_sim::RunningSim>,
    /// The Stripe simulator it is connected to (its own or the shared one).
    pub stripe_handle: mlc_stripe_sim::SimHandle,
    pub netsuite: mlc_netsuite_sim::RunningSim,
    pub items: StackItems,
}

impl TenantSims {
    /// A scenario hook creating this company's NetSuite items (see [`catalog_hook`]).
    pub fn catalog_hook(&self) -> CatalogHook {
        catalog_hook(self.netsuite.handle().clone(), false)
    }

    /// Waits until its Stripe has delivered everything and none of its jobs is queued or running.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        wait_idle(&self.stripe_handle, &self.store, timeout).await
    }

    /// Its invoices in its NetSuite.
    pub fn netsuite_invoices(&self) -> Vec<NsInvoice> {
        netsuite_invoices(self.netsuite.handle(), self.items.fee)
    }

    /// Gives its connection a NetSuite account ID of its own. Every simulator calls itself
    /// `1234567_SB1`, and the connector shares one concurrency budget among the connections
    /// posting to one account: without this, several simulated accounts are governed as one.
    pub async fn use_own_account(&self, account: &str) -> anyhow::Result<()> {
        let store = self.store.store();
        let tenant_store = store.tenant(&self.store.scope().tenant());
        let id = self.store.scope().connection_id().clone();
        let current = tenant_store
            .get_connection(&id)
            .await?
            .context("the tenant's connection is gone")?;
        let mut settings = current.settings.clone();
        settings["netsuite"]["account_id"] = json!(account);
        tenant_store
            .upsert_connection(&NewConnection {
                id,
                name: current.name.clone(),
                status: current.status,
                settings,
                netsuite_account: Some(account.to_string()),
            })
            .await?;
        Ok(())
    }
}

/// A scenario hook creating a NetSuite item, linked by `custitem_stripe_product_id`, for every
/// product (but the deliberately unmapped one unless `map_unmapped`), as a finance team would.
pub fn catalog_hook(handle: mlc_netsuite_sim::SimHandle, map_unmapped: bool) -> CatalogHook {
    catalog_hook_for(vec![handle], map_unmapped)
}

/// [`catalog_hook`] for several NetSuite accounts at once: companies that connected the same
/// Stripe account each keep its catalog in their own NetSuite.
pub fn catalog_hook_for(
    handles: Vec<mlc_netsuite_sim::SimHandle>,
    map_unmapped: bool,
) -> CatalogHook {
    CatalogHook(Arc::new(
        move |products: BTreeMap<String, String>, unmapped: String| {
            let handles = handles.clone();
            Box::pin(async move {
                for (name, id) in products {
                    if id == unmapped && !map_unmapped {
                        continue;
                    }
                    for handle in &handles {
                        if let Err(e) = create_product_item(handle, &name, &id) {
                            tracing::error!("cannot create NetSuite item for {id}: {e}");
                        }
                    }
                }
            })
        },
    ))
}

/// Waits until the Stripe simulator has delivered everything and no job is queued or running
/// (waiting jobs may remain). False on timeout.
pub async fn wait_idle(
    stripe: &mlc_stripe_sim::SimHandle,
    store: &ConnectionStore,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut quiet = 0;
    loop {
        let deliveries = tokio::time::timeout(
            Duration::from_millis(200),
            stripe.wait_for_deliveries_idle(),
        )
        .await
        .is_ok();
        let busy = match store.job_counts().await {
            Ok(counts) => counts
                .iter()
                .filter(|(s, _)| matches!(s, JobState::Queued | JobState::Running))
                .map(|(_, n)| *n)
                .sum::<i64>(),
            Err(_) => 1,
        };
        quiet = if deliveries && busy == 0 {
            quiet + 1
        } else {
            0
        };
        if quiet >= 3 {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The NetSuite invoices in the simulator (`fee_item`: the item of fee lines).
pub fn netsuite_invoices(handle: &mlc_netsuite_sim::SimHandle, fee_item: u64) -> Vec<NsInvoice> {
    handle
        .ids(RecordType::Invoice)
        .into_iter()
        .filter_map(|id| handle.get(RecordType::Invoice, &id.to_string()))
        .filter_map(|v| NsInvoice::from_record(&v, fee_item))
        .collect()
}

/// Creates the NetSuite item for a Stripe product (what a finance team does when mapping).
pub fn create_product_item(
    handle: &mlc_netsuite_sim::SimHandle,
    name: &str,
    product_id: &str,
) -> anyhow::Result<u64> {
    handle
        .create(
            RecordType::ServiceSaleItem,
            json!({
                "itemId": name,
                "displayName": name,
                "subsidiary": {"id": "1"},
                "includeChildren": true,
                "incomeAccount": {"id": "4"},
                "custitem_stripe_product_id": product_id,
            }),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A NetSuite invoice as a test or the reconciliation reads it.
#[derive(Debug, Clone)]
pub struct NsInvoice {
    pub internal_id: String,
    pub external_id: String,
    pub currency: String,
    pub customer: String,
    /// Sum of all lines.
    pub total: Decimal,
    /// Sum of the fee lines (negative in net mode).
    pub fees: Decimal,
    pub amount_remaining: Option<Decimal>,
    pub lines: Vec<NsLine>,
}

#[derive(Debug, Clone)]
pub struct NsLine {
    pub item: String,
    pub quantity: Decimal,
    pub amount: Decimal,
    pub description: Option<String>,
}

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn ref_id(v: &Value) -> String {
    v.get("id")
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string()
}

impl NsInvoice {
    fn from_record(v: &Value, fee_item: u64) -> Option<NsInvoice> {
        let items = v.get("item")?.get("items")?.as_array()?;
        let lines: Vec<NsLine> = items
            .iter()
            .map(|l| NsLine {
                item: ref_id(&l["item"]),
                quantity: dec(&l["quantity"]).unwrap_or(Decimal::ONE),
                amount: dec(&l["amount"]).unwrap_or_default(),
                description: l["description"].as_str().map(str::to_string),
            })
            .collect();
        let fee_item = fee_item.to_string();
        Some(NsInvoice {
            internal_id: v
                .get("id")
                .map(|i| i.to_string().trim_matches('"').to_string())?,
            external_id: v.get("externalId")?.as_str()?.to_string(),
            currency: v
                .get("currency")
                .map(|c| {
                    c.get("refName")
                        .and_then(|r| r.as_str())
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default(),
            customer: ref_id(&v["entity"]),
            total: lines.iter().map(|l| l.amount).sum(),
            fees: lines
                .iter()
                .filter(|l| l.item == fee_item)
                .map(|l| l.amount)
                .sum(),
            amount_remaining: v.get("amountRemaining").and_then(dec),
            lines,
        })
    }
}

/// Where the demo and benchmarks put their files when not told otherwise.
pub fn scratch_dir(name: &str) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(name)
        .tempdir()
        .context("cannot create a temporary directory")
}

/// `sqlite://<dir>/<file>`.
pub fn sqlite_url(dir: &Path, file: &str) -> String {
    format!("sqlite://{}", dir.join(file).display())
}

/// Lowercase ISO code of a currency from the NetSuite simulator's currency name.
pub fn currency_code(ns_name: &str) -> String {
    match ns_name.to_ascii_lowercase().as_str() {
        "us dollar" => "usd",
        "euro" => "eur",
        "japanese yen" => "jpy",
        "kuwaiti dinar" => "kwd",
        "british pound" => "gbp",
        other => other,
    }
    .to_string()
}

/// Gross sales (all lines but fees) of the connector's NetSuite invoices, per ISO currency.
pub fn gross_by_currency(invoices: &[NsInvoice]) -> BTreeMap<String, Decimal> {
    let mut gross: BTreeMap<String, Decimal> = BTreeMap::new();
    for inv in invoices {
        *gross.entry(currency_code(&inv.currency)).or_default() += inv.total - inv.fees;
    }
    gross
}

/// Stripe's gross sales per currency from a scenario report: paid invoices plus one-time charges.
pub fn stripe_gross_by_currency(
    report: &mlc_stripe_sim::ScenarioReport,
) -> BTreeMap<String, Decimal> {
    report
        .totals
        .iter()
        .filter_map(|(code, t)| {
            let c = mlc_core::Currency::parse(code).ok()?;
            let total = mlc_core::Money::new(t.paid_invoice_total + t.standalone_charge_total, c);
            Some((code.clone(), total.to_decimal()))
        })
        .collect()
}
