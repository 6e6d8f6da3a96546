//! `ml-connector demo`: the main job on the embedded default, with both simulators in process.
//! A realistic SaaS month is played in the Stripe simulator; the connector posts it into the
//! NetSuite simulator; one product is deliberately unmapped, then mapped part-way; the run ends
//! with a summary and a per-currency reconciliation of Stripe against NetSuite.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mlc_netsuite_sim::RecordType;
use mlc_store::{ConnectionStore, EventFilter, JobState};
use mlc_stripe_sim::{ScenarioConfig, ScenarioReport, run_scenario};
use rust_decimal::Decimal;

use crate::stack::{
    NsInvoice, Stack, StackItems, StackOptions, UnconnectedSims, catalog_hook, create_product_item,
    currency_code, netsuite_invoices, scratch_dir, sqlite_url, stripe_gross_by_currency, wait_idle,
};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers in the simulated month.
    #[arg(long, default_value_t = 50)]
    pub customers: usize,
    /// Seed of the scenario (same seed, same month).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Store URL; default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep serving the web dashboard (/app) after the month is posted, with work left for you
    /// there: one invoice refused by NetSuite (a closed period, reopened since) to replay, and
    /// the unmapped product's sales waiting for a mapping. Its person, `demo@example.com` (the
    /// default tenant's owner, made for the run), is signed in by a one-time link it prints (or
    /// with the random password it prints); an owner API key for the GraphQL API is printed too.
    /// Sign-up is open, and a second pair of simulators, connected to nothing, waits for a new
    /// company to try the onboarding wizard with (a sign-up link with their settings is
    /// printed; `admin.public_url`, where the wizard has Stripe deliver, is the demo's own
    /// address unless MLC__ADMIN__PUBLIC_URL is set). The operator token (GraphQL
    /// `tenantCreate`) is MLC__ADMIN__TOKEN when set, else a random one printed at start.
    /// Stops on Ctrl-C.
    #[arg(long)]
    pub dashboard: bool,
    /// Address of the connector and its dashboard (with --dashboard: 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// With --dashboard: write the dashboard's URLs (its one-time sign-in link, the wizard's
    /// sign-up link), the API key, the demo user's email and password, the wizard's simulators
    /// and the IDs to use there to this JSON file once it is ready (for scripts and browser tests).
    #[arg(long)]
    pub ready_file: Option<std::path::PathBuf>,
}

/// One company of the demo: its connection's view of the store and its two simulators.
struct Company<'a> {
    /// How the demo names it (its tenant).
    tenant: String,
    store: &'a ConnectionStore,
    stripe: &'a mlc_stripe_sim::RunningSim,
    netsuite: &'a mlc_netsuite_sim::RunningSim,
    items: &'a StackItems,
}

impl Company<'_> {
    async fn idle(&self, timeout: Duration) -> bool {
        wait_idle(&self.stripe.handle, self.store, timeout).await
    }

    fn invoices(&self) -> Vec<NsInvoice> {
        netsuite_invoices(self.netsuite.handle(), self.items.fee)
    }
}

async fn settle(companies: &[Company<'_>], what: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let mut parts = Vec::new();
        for c in companies {
            let counts: BTreeMap<&str, i64> = c
                .store
                .job_counts()
                .await?
                .into_iter()
                .map(|(s, n)| (s.as_str(), n))
                .collect();
            let events = c.store.count_events().await?;
            parts.push(format!(
                "{}: {events} events, {} queued, {} running, {} done, {} waiting, {} failed",
                c.tenant,
                counts.get("queued").unwrap_or(&0),
                counts.get("running").unwrap_or(&0),
                counts.get("succeeded").unwrap_or(&0),
                counts.get("waiting").unwrap_or(&0),
                counts.get("failed").unwrap_or(&0),
            ));
        }
        bar.set_message(format!("{what}: {}", parts.join(" | ")));
        let mut all_idle = true;
        for c in companies {
            all_idle &= c.idle(Duration::from_millis(600)).await;
        }
        if all_idle {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bar.finish_and_clear();
            anyhow::bail!("{what}: the pipeline did not settle within 10 minutes");
        }
    }
    bar.finish_and_clear();
    println!("   {what}: done");
    Ok(())
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = scratch_dir("ml-connector-demo-")?;
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| sqlite_url(dir.path(), "demo.db"));
    println!(
        "ml-connector demo: two companies, each with its own Stripe and NetSuite (simulators), \
         on one connector"
    );
    println!(
        "1. Starting the simulators and the connector (store: {})",
        mlc_service::config::redact_url(&url)
    );
    let mut opts = StackOptions::new(url, dir.path());
    opts.unmapped_retry_secs = 900;
    opts.listen = args.listen.or(args
        .dashboard
        .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080))));
    let admin_token = args.dashboard.then(|| {
        match std::env::var("MLC__ADMIN__TOKEN")
            .ok()
            .filter(|t| t.len() >= mlc_service::config::ADMIN_TOKEN_MIN_LEN)
        {
            Some(t) => AdminToken::Supplied(t),
            None => AdminToken::Generated(hex::encode(rand::random::<[u8; 32]>())),
        }
    });
    if let Some(t) = admin_token.as_ref().map(AdminToken::value) {
        opts.extra_env
            .push(("MLC__ADMIN__TOKEN".to_string(), t.clone()));
        // The dashboard's other settings (its time zone) come from the environment as usual;
        // sign-up is open, for the wizard's second company.
        opts.extra_env.extend(std::env::vars().filter(|(k, _)| {
            k.starts_with("MLC__ADMIN__") && k != "MLC__ADMIN__TOKEN" && k != "MLC__ADMIN__SIGNUP"
        }));
        opts.extra_env
            .push(("MLC__ADMIN__SIGNUP".to_string(), "open".to_string()));
        // The wizard asks Stripe to deliver to the service's public address: the demo's own,
        // unless one is set.
        if std::env::var_os("MLC__ADMIN__PUBLIC_URL").is_none()
            && let Some(listen) = opts.listen.as_mut()
        {
            if listen.port() == 0 {
                let free = std::net::TcpListener::bind((listen.ip(), 0))
                    .and_then(|l| l.local_addr())
                    .with_context(|| format!("cannot listen on {listen}"))?;
                listen.set_port(free.port());
            }
            let host = if listen.ip().is_unspecified() {
                std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()))
            } else {
                *listen
            };
            opts.extra_env.push((
                "MLC__ADMIN__PUBLIC_URL".to_string(),
                format!("http://{host}"),
            ));
        }
    }
    let stack = Stack::start(opts.clone())
        .await
        .context("cannot start the demo")?;
    if args.dashboard {
        // Something for the Failed page: NetSuite refuses the first invoice (a closed period).
        // The refusal is one-shot, as if someone reopened the period: a replay then posts it.
        stack
            .netsuite
            .handle()
            .push_fault(mlc_netsuite_sim::QueuedFault {
                kind: mlc_netsuite_sim::FaultKind::PeriodClosed,
                method: Some("POST".into()),
                path_contains: Some("/record/v1/invoice".into()),
            });
    }
    // The second company connects the way an operator connects one: a tenant, a connection
    // with its settings, its keys sealed as credentials, Stripe delivering to its own route.
    let globex = stack
        .add_tenant("globex", "production", &opts, None)
        .await
        .context("cannot connect the second company")?;
    let globex_stripe = globex
        .stripe
        .as_ref()
        .context("the second company's Stripe simulator")?;
    let companies = [
        Company {
            tenant: "default".into(),
            store: &stack.store,
            stripe: &stack.stripe,
            netsuite: &stack.netsuite,
            items: &stack.items,
        },
        Company {
            tenant: "globex".into(),
            store: &globex.store,
            stripe: globex_stripe,
            netsuite: &globex.netsuite,
            items: &globex.items,
        },
    ];
    println!("   connector http://{}", stack.addr);
    println!(
        "   default (the configured company): Stripe {}  NetSuite {}  webhooks /webhooks/stripe",
        stack.stripe.base_url,
        stack.netsuite.base_url()
    );
    println!(
        "   globex (a second tenant):         Stripe {}  NetSuite {}  webhooks /webhooks/stripe/{}",
        globex_stripe.base_url,
        globex.netsuite.base_url(),
        globex.route
    );

    let globex_customers = (args.customers / 2).max(2);
    println!(
        "2. Playing a SaaS month in each Stripe: {} and {} customers, USD/EUR/JPY/KWD, seeds {} and {}",
        args.customers,
        globex_customers,
        args.seed,
        args.seed + 1
    );
    let (report, globex_report) = tokio::join!(
        run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            ScenarioConfig {
                customers: args.customers,
                seed: args.seed,
                credit_notes: 4,
                disputes: 2,
                payouts: true,
                on_catalog: Some(stack.catalog_hook()),
                ..ScenarioConfig::default()
            },
        ),
        run_scenario(
            &globex_stripe.base_url,
            globex_stripe.api_key_str(),
            ScenarioConfig {
                customers: globex_customers,
                seed: args.seed + 1,
                credit_notes: 4,
                disputes: 2,
                payouts: true,
                on_catalog: Some(globex.catalog_hook()),
                ..ScenarioConfig::default()
            },
        )
    );
    let report = report.context("the scenario failed")?;
    let globex_report = globex_report.context("the second company's scenario failed")?;
    // Invoices that will never be paid: one voided, one marked uncollectible in each company.
    // Posted only when paid (the default trigger), they were never in NetSuite, and nothing
    // posts for them; the audit says so.
    let mut unpaid = [0_usize; 2];
    for (i, (c, r)) in companies.iter().zip([&report, &globex_report]).enumerate() {
        let credited: std::collections::BTreeSet<&String> =
            r.credit_notes.iter().map(|n| &n.invoice).collect();
        let open = r.open_invoices.iter().filter(|i| !credited.contains(i));
        for (invoice, action) in open.zip(["void", "mark_uncollectible"]) {
            reqwest::Client::new()
                .post(format!(
                    "{}/v1/invoices/{invoice}/{action}",
                    c.stripe.base_url
                ))
                .bearer_auth(c.stripe.api_key_str())
                .send()
                .await?
                .error_for_status()
                .with_context(|| format!("{action} {invoice} in the Stripe simulator"))?;
            unpaid[i] += 1;
        }
    }
    for (i, (c, r)) in companies.iter().zip([&report, &globex_report]).enumerate() {
        println!(
            "   {}: {} paid invoices, {} one-time charges, {} declined payments, {} refunds, {} credit notes, {} disputes ({} won), {} unpaid invoices voided or written off",
            c.tenant,
            r.paid_invoices.len(),
            r.standalone_charges.len(),
            r.failed_charges.len(),
            r.refunds.len(),
            r.credit_notes.len(),
            r.disputes.len(),
            r.disputes.iter().filter(|d| d.outcome == "won").count(),
            unpaid[i]
        );
    }
    settle(&companies, "Posting to NetSuite").await?;

    println!("3. Waiting for a person: in each company one product has no NetSuite item yet");
    println!("   $ ml-connector mappings unmapped");
    super::mappings::print_unmapped(&stack.store, false).await?;
    let item = create_product_item(
        stack.netsuite.handle(),
        "Legacy Add-on",
        &report.unmapped_product,
    )?;
    if let Some(token) = &admin_token {
        return serve_dashboard(args, &opts, stack, token, &report.unmapped_product, item).await;
    }
    println!("   Mapping it now in each: a NetSuite item is created and `mappings set` links it");
    for (c, r) in companies.iter().zip([&report, &globex_report]) {
        let item = if c.store.scope() == stack.store.scope() {
            item
        } else {
            create_product_item(c.netsuite.handle(), "Legacy Add-on", &r.unmapped_product)?
        };
        let released =
            mlc_service::mappings::set_mapping(c.store, &r.unmapped_product, &item.to_string())
                .await?;
        println!(
            "   {}: {} → NetSuite item {item}: {released} waiting event(s) released at once",
            c.tenant, r.unmapped_product
        );
    }
    settle(&companies, "Posting the released invoices").await?;

    let mut problems = Vec::new();
    for (c, r) in companies.iter().zip([&report, &globex_report]) {
        problems.extend(summarise(c, r, &stack.config, &stack.master_key).await?);
    }

    // Tenants never meet: no Stripe object of one company is in the other's NetSuite.
    println!("\nIsolation");
    for (c, other) in [(&companies[0], &globex_report), (&companies[1], &report)] {
        let theirs: std::collections::BTreeSet<String> = other
            .paid_invoices
            .iter()
            .chain(other.standalone_charges.iter())
            .map(|id| format!("stripe_{id}").to_lowercase())
            .collect();
        let leaked = c
            .invoices()
            .iter()
            .filter(|i| theirs.contains(&i.external_id.to_lowercase()))
            .count();
        println!(
            "  {}'s NetSuite holds {leaked} record(s) of the other company",
            c.tenant
        );
        if leaked > 0 {
            problems.push(format!(
                "{leaked} record(s) of another company in {}'s NetSuite",
                c.tenant
            ));
        }
    }
    drop(companies);
    drop(globex);
    stack.stop().await?;
    if !problems.is_empty() {
        anyhow::bail!("the demo ended with: {}", problems.join("; "));
    }
    println!(
        "\nNo difference: every Stripe sale of each company is in its own NetSuite exactly once."
    );
    Ok(())
}

/// One company's summary and reconciliation; returns what did not add up.
async fn summarise(
    c: &Company<'_>,
    report: &ScenarioReport,
    config: &mlc_service::config::Config,
    master_key: &mlc_store::sealed::MasterKey,
) -> anyhow::Result<Vec<String>> {
    let counts: BTreeMap<String, i64> = c
        .store
        .job_counts()
        .await?
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect();
    let invoices = c.invoices();
    let payments = c.netsuite.handle().count(RecordType::CustomerPayment);
    let ignored = c
        .store
        .list_events(&EventFilter {
            status: Some("ignored".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await?
        .len();
    println!("\nSummary: {} ({})", c.tenant, c.store.scope());
    println!(
        "  Stripe events received       {}",
        c.store.count_events().await?
    );
    println!(
        "  …acted on / ignored          {} / {ignored}",
        counts.values().sum::<i64>()
    );
    println!(
        "  NetSuite invoices posted     {} ({} Stripe invoices, {} one-time charges)",
        invoices.len(),
        invoices
            .iter()
            .filter(|i| i.external_id.starts_with("stripe_in_"))
            .count(),
        invoices
            .iter()
            .filter(|i| i.external_id.starts_with("stripe_ch_"))
            .count()
    );
    println!("  Payments applied             {payments}");
    let handle = c.netsuite.handle();
    println!(
        "  Credit memos posted          {} (refunds and credit notes; {} customer refunds)",
        handle.count(RecordType::CreditMemo),
        handle.count(RecordType::CustomerRefund)
    );
    println!(
        "  Payouts deposited            {} (one NetSuite deposit each)",
        handle.count(RecordType::Deposit)
    );
    println!(
        "  Dispute journal entries      {}",
        handle
            .ids(RecordType::JournalEntry)
            .into_iter()
            .filter_map(|id| handle.get(RecordType::JournalEntry, &id.to_string()))
            .filter(|je| je["externalId"]
                .as_str()
                .is_some_and(|e| e.starts_with("stripe_txn_")))
            .count()
    );
    println!(
        "  Waiting for a person         {}",
        counts.get(JobState::Waiting.as_str()).unwrap_or(&0)
    );
    println!(
        "  Failed                       {}",
        counts.get(JobState::Failed.as_str()).unwrap_or(&0)
    );

    // Reconciliation: Stripe's gross sales per currency against the NetSuite invoices' lines
    // (all but the fee lines); NetSuite's net is what the invoices total after Stripe fees.
    let mut ns_gross: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut ns_fees: BTreeMap<String, Decimal> = BTreeMap::new();
    for inv in &invoices {
        let code = currency_code(&inv.currency);
        *ns_gross.entry(code.clone()).or_default() += inv.total - inv.fees;
        *ns_fees.entry(code).or_default() += inv.fees;
    }
    println!(
        "  Reconciliation (gross sales; fees are posted as negative lines, revenue net of fees)"
    );
    println!(
        "  {:<4} {:>16} {:>16} {:>12} {:>14} {:>16}",
        "CUR", "Stripe", "NetSuite", "difference", "fees", "NetSuite net"
    );
    let mut differences = 0;
    for (code, stripe) in stripe_gross_by_currency(report) {
        let code = &code;
        let ns = ns_gross.get(code).copied().unwrap_or_default();
        let fees = ns_fees.get(code).copied().unwrap_or_default();
        let diff = ns - stripe;
        if !diff.is_zero() {
            differences += 1;
        }
        println!(
            "  {:<4} {:>16} {:>16} {:>12} {:>14} {:>16}",
            code.to_uppercase(),
            stripe.to_string(),
            ns.to_string(),
            diff.to_string(),
            fees.to_string(),
            (ns + fees).to_string()
        );
    }
    // The reconciliation a finance team runs (`ml-connector reconcile`): Stripe's balance
    // transactions of the demo's days against NetSuite's records, refunds included.
    let scope = c.store.scope();
    let target = mlc_service::connections::Target {
        tenant: Some(scope.tenant_id().as_str().to_string()),
        connection: Some(scope.connection_id().as_str().to_string()),
    };
    let (store, pipeline) =
        mlc_service::connections::open_pipeline(config, &target, Some(master_key)).await?;
    let tz = pipeline.posting().time_zone.clone();
    let today = jiff::Timestamp::now().to_zoned_datetime(tz.clone()).date();
    let (from, to) = (today.yesterday()?, today.tomorrow()?);
    let period = mlc_service::pipeline::period_of(from, to, &tz)
        .and_then(|(since, days)| mlc_service::pipeline::window_of(since, days, &tz))
        .map_err(|e| anyhow::anyhow!(e));
    let reconciled = match period {
        Ok((since, until)) => pipeline
            .reconcile(since, until, None)
            .await
            .map_err(|e| anyhow::anyhow!("the reconciliation failed: {e}")),
        Err(e) => Err(e),
    };
    store.close().await;
    let reconciled = reconciled?;
    println!(
        "  $ ml-connector reconcile --tenant {} --from {from} --to {to}",
        scope.tenant_id()
    );
    print!(
        "{}",
        super::reconcile::render(&reconciled, &format!("{from} to {to}"))
    );
    if !reconciled.is_clean() {
        differences += 1;
    }
    let failed = *counts.get(JobState::Failed.as_str()).unwrap_or(&0);
    let waiting = *counts.get(JobState::Waiting.as_str()).unwrap_or(&0);
    let mut problems = Vec::new();
    if differences > 0 || failed > 0 || waiting > 0 {
        problems.push(format!(
            "{}: {differences} currency difference(s), {failed} failed and {waiting} waiting",
            c.tenant
        ));
    }
    Ok(problems)
}

/// The operator token (`admin.token`: GraphQL's `tenantCreate`), and whether the demo may print
/// it.
enum AdminToken {
    /// The user's own, from `MLC__ADMIN__TOKEN`: a secret the demo never repeats.
    Supplied(String),
    /// Made up by the demo for this run: printed so the user can try it.
    Generated(String),
}

impl AdminToken {
    fn value(&self) -> &String {
        match self {
            AdminToken::Supplied(t) | AdminToken::Generated(t) => t,
        }
    }

    /// What the demo says about the token.
    fn hint(&self) -> String {
        match self {
            AdminToken::Supplied(_) => "the one you set in MLC__ADMIN__TOKEN".to_string(),
            AdminToken::Generated(t) => t.clone(),
        }
    }
}

/// The demo's person of the default tenant, for the dashboard at `/app`.
const DEMO_APP_EMAIL: &str = "demo@example.com";

/// The "try the wizard" simulators' NetSuite account (the others use the example seed's).
const WIZARD_NETSUITE_ACCOUNT: &str = "7654321_SB2";

/// What a person needs to connect a new company to the wizard's simulators.
struct Wizard {
    sims: UnconnectedSims,
    /// The integration's client ID the NetSuite simulator takes a certificate for.
    client_id: String,
    /// The Stripe product the wizard's NetSuite has no item for, and the item to map it to.
    unmapped_product: String,
    unmapped_item: u64,
    report: ScenarioReport,
}

/// Starts the wizard's simulators (connected to nothing) and plays a month in their Stripe;
/// their NetSuite gets an item for every product but one.
async fn start_wizard(opts: &StackOptions, customers: usize, seed: u64) -> anyhow::Result<Wizard> {
    let sims = UnconnectedSims::start(opts, WIZARD_NETSUITE_ACCOUNT).await?;
    let report = run_scenario(
        &sims.stripe.base_url,
        sims.stripe.api_key_str(),
        ScenarioConfig {
            customers,
            seed,
            on_catalog: Some(catalog_hook(sims.netsuite.handle().clone(), false)),
            ..ScenarioConfig::default()
        },
    )
    .await
    .context("the wizard's Stripe month failed")?;
    // An item with no link to the product: the person maps it when the dry run asks.
    let unmapped_item = sims
        .netsuite
        .handle()
        .create(
            RecordType::ServiceSaleItem,
            serde_json::json!({
                "itemId": "Legacy Add-on",
                "displayName": "Legacy Add-on",
                "subsidiary": {"id": "1"},
                "includeChildren": true,
                "incomeAccount": {"id": "4"},
            }),
        )
        .map_err(|e| anyhow::anyhow!("cannot create the wizard's NetSuite item: {e}"))?;
    Ok(Wizard {
        client_id: hex::encode(rand::random::<[u8; 32]>()),
        unmapped_product: report.unmapped_product.clone(),
        unmapped_item,
        report,
        sims,
    })
}

/// `demo --dashboard`: leaves the failed invoice and the waiting sales for the person at the
/// dashboard (`/app`, opened by a one-time sign-in link), starts the wizard's simulators for a
/// second company, and serves until Ctrl-C.
async fn serve_dashboard(
    args: &DemoArgs,
    opts: &StackOptions,
    stack: Stack,
    token: &AdminToken,
    product: &str,
    item: u64,
) -> anyhow::Result<()> {
    // Someone reopened the period: a replay of the refused invoice now posts it.
    stack.netsuite.handle().clear_faults();
    let url = format!("http://{}/", stack.addr);
    let app_url = format!("{url}app/");
    let counts =
        mlc_service::console::Console::new(stack.store.clone(), None, jiff::tz::TimeZone::UTC)
            .counts()
            .await?;
    // A key for the GraphQL API, made for this run (like a generated admin token, it is printed).
    let tenant = stack.store.scope().tenant();
    let api_key = stack
        .store
        .store()
        .tenant(&tenant)
        .create_api_key("demo", mlc_store::ApiKeyRole::Owner)
        .await
        .context("cannot make the demo's API key")?
        .secret;
    let api_key = secrecy::ExposeSecret::expose_secret(&api_key);
    // A person of the default tenant for the dashboard (it signs in through GraphQL): made for
    // this run, with a random password that is printed like the API key, and a one-time link
    // that signs them in with none.
    let app_password = format!("demo-{}", hex::encode(rand::random::<[u8; 12]>()));
    mlc_service::accounts::create_member(
        stack.store.store(),
        &tenant,
        DEMO_APP_EMAIL,
        &secrecy::SecretString::from(app_password.clone()),
        mlc_store::ApiKeyRole::Owner,
    )
    .await
    .context("cannot make the demo's app user")?;
    let link = mlc_service::accounts::sign_in_link(stack.store.store(), &tenant, DEMO_APP_EMAIL)
        .await
        .context("cannot make the demo's sign-in link")?;
    let signin_url = format!(
        "{app_url}#/link?token={}",
        secrecy::ExposeSecret::expose_secret(&link.token)
    );

    println!(
        "4. Starting a second pair of simulators for the onboarding wizard (connected to nothing)"
    );
    let wizard = start_wizard(opts, args.customers, args.seed + 2).await?;
    let preset = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(&wizard.sims.preset_settings())?,
    );
    let signup_url = format!("{app_url}#/signup?preset={preset}");
    let ns = wizard.sims.netsuite.base_url();
    let upload_url = format!("{ns}/_sim/m2m/certificates");
    println!(
        "   Stripe {}: {} paid invoices, {} one-time charges; NetSuite {ns} (account {})",
        wizard.sims.stripe.base_url,
        wizard.report.paid_invoices.len(),
        wizard.report.standalone_charges.len(),
        wizard.sims.netsuite.account_id(),
    );

    println!("\nThe dashboard is ready: {app_url}");
    println!("   Open this link to be signed in as {DEMO_APP_EMAIL} (the default tenant's owner):");
    println!("   {signin_url}");
    println!(
        "   (it works once, for 15 minutes; then sign in as {DEMO_APP_EMAIL} with password \
         {app_password})"
    );
    println!(
        "   Failed: {} (the events of one invoice NetSuite refused: its period was closed; it is\n   \
         open again, so replay them from the Failed page)",
        counts.failed
    );
    println!(
        "   Waiting: {} (product {product} has no mapping; NetSuite item {item} \"Legacy Add-on\"\n   \
         is ready: map it on the Mappings page and the waiting sales post at once)",
        counts.waiting
    );
    println!("   GraphQL: {url}graphql (GraphiQL in a browser; `Authorization: Bearer <API key>`)");
    println!("   API key (the default tenant's owner, made for this run): {api_key}");
    println!(
        "   Operator token (GraphQL tenantCreate, as the bearer): {}",
        token.hint()
    );
    println!(
        "\nTry the wizard: sign up a new company and connect it to the second pair of simulators"
    );
    println!("   {signup_url}");
    println!(
        "   Stripe secret key: {}  (a month of sales; product {} has no NetSuite item yet)",
        wizard.sims.stripe.api_key_str(),
        wizard.unmapped_product
    );
    println!(
        "   NetSuite account ID: {}  integration client ID: {}",
        wizard.sims.netsuite.account_id(),
        wizard.client_id
    );
    println!(
        "   Upload the certificate the wizard makes at {ns}/_sim/m2m/setup (or POST it to {upload_url})"
    );
    println!(
        "   When the dry run asks, map {} to NetSuite item {} \"Legacy Add-on\"",
        wizard.unmapped_product, wizard.unmapped_item
    );
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "url": url,
            "api_key": api_key,
            "app_url": app_url,
            "app_email": DEMO_APP_EMAIL,
            "app_password": app_password,
            "signin_url": signin_url,
            "signup_url": signup_url,
            "wizard": {
                "stripe_api_key": wizard.sims.stripe.api_key_str(),
                "netsuite_account_id": wizard.sims.netsuite.account_id(),
                "netsuite_client_id": wizard.client_id,
                "netsuite_upload_url": upload_url,
                "unmapped_item_id": wizard.unmapped_item.to_string(),
                "unmapped_product": wizard.unmapped_product,
                "stripe_simulator": wizard.sims.stripe.base_url,
                "netsuite_simulator": ns,
            },
            "netsuite_simulator": stack.netsuite.base_url().to_string(),
            "stripe_simulator": stack.stripe.base_url,
            "product": product,
            "item": item.to_string(),
            "failed": counts.failed,
            "waiting": counts.waiting,
        });
        // Whole or not at all (a script polls for it), before the last line is printed.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(&ready)?)
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("Press Ctrl-C to stop.");
    let stop = tokio_util::sync::CancellationToken::new();
    crate::startup::cancel_on_signals(stop.clone());
    stop.cancelled().await;
    drop(wizard);
    stack.stop().await
}
