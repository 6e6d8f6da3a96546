//! End-to-end variants of posting, on every store backend: fees posted gross as journal entries,
//! replays that change nothing in NetSuite, existing NetSuite customers reused, and the operator
//! CLI (`events show`, `replay`) run as the real binary against the stack's store.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ml_connector::stack::{Stack, StackOptions, catalog_hook, create_product_item};
use mlc_netsuite_sim::RecordType;
use mlc_store::testing::backends;
use mlc_store::{AuditEntry, ConnectionStore, EventFilter, JobState};
use mlc_stripe_sim::{ScenarioConfig, run_scenario};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::cli;

const SETTLE: Duration = Duration::from_secs(120);

fn dec(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => n.to_string().parse().ok(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn ref_id(v: &Value) -> String {
    match &v["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A small month of sales with every product mapped (nothing waits for a person).
fn small_scenario(stack: &Stack, seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        customers: 6,
        seed,
        checkout_percent: 60,
        refunds: 0,
        manual_invoices: 1,
        on_catalog: Some(catalog_hook(stack.netsuite.handle().clone(), true)),
        ..ScenarioConfig::default()
    }
}

async fn job_counts(store: &ConnectionStore) -> BTreeMap<String, i64> {
    store
        .job_counts()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, n)| (s.as_str().to_string(), n))
        .collect()
}

fn record_counts(stack: &Stack) -> [(RecordType, usize); 4] {
    [
        RecordType::Invoice,
        RecordType::CustomerPayment,
        RecordType::Customer,
        RecordType::JournalEntry,
    ]
    .map(|t| (t, stack.netsuite_count(t)))
}

fn steps(audit: &[AuditEntry]) -> Vec<&str> {
    audit.iter().map(|a| a.step.as_str()).collect()
}

/// The audit steps after the last `replayed` entry (None when the event was never replayed).
fn steps_after_last_replay(audit: &[AuditEntry]) -> Option<Vec<&str>> {
    let last = audit.iter().rposition(|a| a.step == "replayed")?;
    Some(steps(&audit[last + 1..]))
}

#[tokio::test]
async fn gross_fees_post_as_one_balanced_journal_entry_per_charge() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.fees = "gross".into();
        let stack = Stack::start(opts).await.expect("stack starts");
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            small_scenario(&stack, 21),
        )
        .await
        .expect("scenario runs");
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");
        let counts = job_counts(&stack.store).await;
        assert_eq!(counts.get("failed").copied().unwrap_or(0), 0, "{counts:?}");
        assert_eq!(counts.get("waiting").copied().unwrap_or(0), 0, "{counts:?}");

        // Invoices at the amount charged: no fee line, paid in full.
        let invoices = stack.netsuite_invoices();
        let sales = report.paid_invoices.len() + report.standalone_charges.len();
        assert!(sales > 0, "the scenario sold nothing");
        assert_eq!(invoices.len(), sales);
        let fee_item = stack.items.fee.to_string();
        for inv in &invoices {
            assert!(
                inv.lines.iter().all(|l| l.item != fee_item),
                "{} has a fee line in gross mode: {:?}",
                inv.external_id,
                inv.lines
            );
            assert_eq!(
                inv.amount_remaining,
                Some(Decimal::ZERO),
                "{}",
                inv.external_id
            );
        }
        // NetSuite totals equal Stripe's gross per currency, to the minor unit.
        let mut ns_totals: BTreeMap<String, Decimal> = BTreeMap::new();
        for inv in &invoices {
            *ns_totals
                .entry(ml_connector::stack::currency_code(&inv.currency))
                .or_default() += inv.total;
        }
        for (code, stripe) in ml_connector::stack::stripe_gross_by_currency(&report) {
            assert_eq!(
                ns_totals.get(&code).copied().unwrap_or_default(),
                stripe,
                "{code}"
            );
        }

        // One journal entry per charge (each paid invoice is one charge here), balanced,
        // debiting the fee expense account and crediting the clearing account.
        let h = stack.netsuite.handle();
        let journals: Vec<Value> = h
            .ids(RecordType::JournalEntry)
            .into_iter()
            .filter_map(|id| h.get(RecordType::JournalEntry, &id.to_string()))
            .collect();
        assert_eq!(journals.len(), sales, "one journal entry per charge");
        let mut external_ids = BTreeSet::new();
        let mut usd_fees = Decimal::ZERO;
        for je in &journals {
            let eid = je["externalId"].as_str().unwrap_or_default().to_string();
            assert!(eid.starts_with("stripe_fee_ch_"), "{eid}");
            external_ids.insert(eid.clone());
            let lines = je["line"]["items"].as_array().expect("journal lines");
            let debit: Decimal = lines.iter().filter_map(|l| dec(&l["debit"])).sum();
            let credit: Decimal = lines.iter().filter_map(|l| dec(&l["credit"])).sum();
            assert!(debit > Decimal::ZERO, "{eid}: no fee debited");
            assert_eq!(debit, credit, "{eid} is not balanced");
            let debited: Vec<String> = lines
                .iter()
                .filter(|l| dec(&l["debit"]).is_some())
                .map(|l| ref_id(&l["account"]))
                .collect();
            let credited: Vec<String> = lines
                .iter()
                .filter(|l| dec(&l["credit"]).is_some())
                .map(|l| ref_id(&l["account"]))
                .collect();
            assert_eq!(debited, ["5"], "{eid}: fee expense account");
            assert_eq!(credited, ["2"], "{eid}: Stripe clearing account");
            if ref_id(&je["currency"]) == "1" {
                usd_fees += debit;
            }
        }
        assert_eq!(
            external_ids.len(),
            journals.len(),
            "duplicate journal entries"
        );
        for ch in &report.standalone_charges {
            assert!(
                external_ids.contains(&format!("stripe_fee_{ch}")),
                "no fee journal for {ch}"
            );
        }
        // USD charges settle in USD: the journals carry exactly Stripe's fees.
        if let Some(t) = report.totals.get("usd") {
            assert_eq!(usd_fees, Decimal::new(t.settled_fees, 2), "USD fees");
        }
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn replaying_posted_events_changes_nothing_in_netsuite() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let report = run_scenario(
            &stack.stripe.base_url,
            stack.stripe.api_key_str(),
            small_scenario(&stack, 5),
        )
        .await
        .expect("scenario runs");
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");
        let before = record_counts(&stack);
        assert_eq!(
            before[0].1,
            report.paid_invoices.len() + report.standalone_charges.len()
        );
        let succeeded = stack
            .store
            .list_events(&EventFilter {
                status: Some("succeeded".into()),
                limit: 10_000,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert!(!succeeded.is_empty());

        // `ml-connector replay --status succeeded`.
        let n = stack
            .store
            .requeue_where(JobState::Succeeded, None)
            .await
            .unwrap();
        assert_eq!(n as usize, succeeded.len(), "every succeeded job replayed");
        assert!(stack.wait_idle(SETTLE).await, "replay did not settle");

        // And one event again on its own: an invoice.paid that posted an invoice.
        let paid = succeeded
            .iter()
            .find(|e| e.event_type == "invoice.paid")
            .expect("an invoice.paid event");
        assert!(stack.store.requeue_event(&paid.event_id).await.unwrap());
        assert!(stack.wait_idle(SETTLE).await, "replay did not settle");

        assert_eq!(record_counts(&stack), before, "NetSuite changed on replay");
        let counts = job_counts(&stack.store).await;
        assert_eq!(
            counts.get("succeeded").copied().unwrap_or(0) as usize,
            succeeded.len(),
            "{counts:?}"
        );

        // Each replayed event says why nothing was posted again. Reference events (customers,
        // products) re-read Stripe and find nothing to change.
        const NOTHING_POSTED: &[&str] = &[
            "already_posted",
            "covered_by_invoice",
            "skipped",
            "payment_failed",
            "fetched",
            "customer_unchanged",
            "item_unchanged",
            "item_found",
            "item_missing",
            "deleted_in_stripe",
        ];
        for e in &succeeded {
            let audit = stack.store.audit_for_event(&e.event_id).await.unwrap();
            let after = steps_after_last_replay(&audit)
                .unwrap_or_else(|| panic!("{} ({}) not replayed", e.event_id, e.event_type));
            // The runner closes each run with `succeeded`; before it, why nothing posted.
            let why = after.strip_suffix(&["succeeded"]).unwrap_or(&[]);
            assert!(
                !why.is_empty() && why.iter().all(|s| NOTHING_POSTED.contains(s)),
                "{} ({}): after replay {after:?}; whole trail {:?}",
                e.event_id,
                e.event_type,
                steps(&audit)
            );
        }
        let audit = stack.store.audit_for_event(&paid.event_id).await.unwrap();
        assert_eq!(
            audit.iter().filter(|a| a.step == "replayed").count(),
            2,
            "{:?}",
            steps(&audit)
        );
        assert_eq!(
            steps_after_last_replay(&audit).unwrap(),
            ["already_posted", "succeeded"],
            "{:?}",
            steps(&audit)
        );
        let posted = audit
            .iter()
            .rev()
            .find(|a| a.step == "already_posted")
            .unwrap();
        assert!(
            posted.message.contains("already NetSuite invoice"),
            "{}",
            posted.message
        );
        stack.stop().await.unwrap();
    }
}

/// Calls the Stripe simulator's API as a merchant's own code would.
struct StripeApi {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl StripeApi {
    fn of(stack: &Stack) -> StripeApi {
        StripeApi {
            http: reqwest::Client::new(),
            base: stack.stripe.base_url.clone(),
            key: stack.stripe.api_key_str().to_string(),
        }
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {body}");
        body
    }

    async fn customer(&self, name: &str, email: &str) -> String {
        let c = self
            .post(
                "/v1/customers",
                &[
                    ("name", name),
                    ("email", email),
                    ("payment_method", "pm_card_visa"),
                    ("invoice_settings[default_payment_method]", "pm_card_visa"),
                ],
            )
            .await;
        c["id"].as_str().unwrap().to_string()
    }

    /// A one-time USD price of a new product; returns (product, price).
    async fn product(&self, name: &str, unit_amount: &str) -> (String, String) {
        let prod = self.post("/v1/products", &[("name", name)]).await;
        let prod = prod["id"].as_str().unwrap().to_string();
        let price = self
            .post(
                "/v1/prices",
                &[
                    ("product", &prod),
                    ("currency", "usd"),
                    ("unit_amount", unit_amount),
                ],
            )
            .await;
        (prod, price["id"].as_str().unwrap().to_string())
    }

    /// A manual invoice: invoice item, finalize, pay. Returns the invoice ID.
    async fn sell(&self, customer: &str, price: &str, quantity: &str) -> String {
        let id = self.finalized_invoice(customer, price, quantity).await;
        self.pay(&id).await;
        id
    }

    async fn pay(&self, invoice: &str) {
        let paid = self.post(&format!("/v1/invoices/{invoice}/pay"), &[]).await;
        assert_eq!(paid["status"], "paid", "{paid}");
    }

    /// A manual invoice, finalized (open, not paid yet). Returns the invoice ID.
    async fn finalized_invoice(&self, customer: &str, price: &str, quantity: &str) -> String {
        let inv = self
            .post(
                "/v1/invoices",
                &[
                    ("customer", customer),
                    ("currency", "usd"),
                    ("description", "Test sale"),
                ],
            )
            .await;
        let id = inv["id"].as_str().unwrap().to_string();
        self.post(
            "/v1/invoiceitems",
            &[
                ("customer", customer),
                ("invoice", &id),
                ("price", price),
                ("quantity", quantity),
            ],
        )
        .await;
        self.post(&format!("/v1/invoices/{id}/finalize"), &[]).await;
        id
    }
}

#[tokio::test]
async fn existing_netsuite_customers_are_reused_not_duplicated() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        // NetSuite owns the names of customers it already has (reference.customer_owner).
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.extra_env
            .push(("MLC__REFERENCE__CUSTOMER_OWNER".into(), "netsuite".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        let api = StripeApi::of(&stack);
        let h = stack.netsuite.handle();
        let (product, price) = api.product("Widget", "2500").await;
        create_product_item(h, "Widget", &product).unwrap();

        let alpha = api.customer("Alpha Ltd", "alpha@example.com").await;
        let beta = api.customer("Beta GmbH", "beta@example.com").await;
        let gamma = api.customer("Gamma Inc", "gamma@example.com").await;
        // The finance team already has Alpha (same email, typed with capitals) and Beta (Stripe ID in the custom
        // field, another email); Gamma is new to NetSuite.
        let ns_alpha = h
            .create(
                RecordType::Customer,
                json!({"companyName": "Alpha Limited (NetSuite)", "email": "Alpha@Example.com",
                       "subsidiary": {"id": "1"}}),
            )
            .unwrap();
        let ns_beta = h
            .create(
                RecordType::Customer,
                json!({"companyName": "Beta (NetSuite)", "email": "ap@beta.example",
                       "subsidiary": {"id": "1"}, "custentity_stripe_customer_id": beta}),
            )
            .unwrap();
        let customers_before = stack.netsuite_count(RecordType::Customer);

        let inv_alpha = api.sell(&alpha, &price, "2").await;
        let inv_beta = api.sell(&beta, &price, "1").await;
        let inv_gamma = api.sell(&gamma, &price, "3").await;
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");

        let entity_of = |inv: &str| {
            let rec = h
                .get(RecordType::Invoice, &format!("eid:stripe_{inv}"))
                .unwrap_or_else(|| panic!("{inv} not posted"));
            ref_id(&rec["entity"])
        };
        assert_eq!(
            entity_of(&inv_alpha),
            ns_alpha.to_string(),
            "Alpha by email"
        );
        assert_eq!(
            entity_of(&inv_beta),
            ns_beta.to_string(),
            "Beta by custom field"
        );
        let ns_gamma = h
            .get(RecordType::Customer, &format!("eid:stripe_{gamma}"))
            .expect("Gamma created with its Stripe external ID");
        assert_eq!(entity_of(&inv_gamma), ref_id(&ns_gamma));
        assert_eq!(
            ns_gamma["custentity_stripe_customer_id"].as_str(),
            Some(gamma.as_str())
        );
        assert_eq!(ns_gamma["email"].as_str(), Some("gamma@example.com"));
        assert_eq!(
            stack.netsuite_count(RecordType::Customer),
            customers_before + 1,
            "only Gamma is created"
        );
        assert_eq!(stack.netsuite_count(RecordType::Invoice), 3);
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 3);
        // The twins are untouched (no external ID written onto them).
        let alpha_rec = h.get(RecordType::Customer, &ns_alpha.to_string()).unwrap();
        assert_eq!(alpha_rec["companyName"], "Alpha Limited (NetSuite)");
        stack.stop().await.unwrap();
    }
}

/// Audit steps as `events show` prints them ("  <time>  <step> <message>"), in order.
fn printed_steps(show: &str) -> Vec<String> {
    show.lines()
        .skip_while(|l| !l.starts_with("Audit trail:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn events_show_and_replay_from_the_command_line() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let stack = Stack::start(StackOptions::new(db.url(), keys.path()))
            .await
            .expect("stack starts");
        let api = StripeApi::of(&stack);
        let (product, price) = api.product("Gadget", "4900").await;
        create_product_item(stack.netsuite.handle(), "Gadget", &product).unwrap();
        let customer = api.customer("Delta Co", "delta@example.com").await;
        let invoice = api.sell(&customer, &price, "1").await;
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");

        let ns_invoice = stack
            .netsuite
            .handle()
            .get(RecordType::Invoice, &format!("eid:stripe_{invoice}"))
            .expect("invoice posted");
        let ns_id = ref_id(&json!({"id": ns_invoice["id"]}));
        // invoice.paid and invoice.payment_succeeded both name it; one of them posted it.
        let events = stack
            .store
            .list_events(&EventFilter {
                stripe_id: Some(invoice.clone()),
                limit: 100,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let mut poster = None;
        for e in &events {
            let audit = stack.store.audit_for_event(&e.event_id).await.unwrap();
            if audit.iter().any(|a| a.step == "posted") {
                poster = Some(e.event_id.clone());
            }
        }
        let evt = poster.expect("an event of the invoice posted it");

        let (ok, out, err) = cli(db.url(), &["events", "show", &evt]);
        assert!(ok, "events show failed: {err}");
        assert!(out.contains(&format!("Event     {evt}")), "{out}");
        assert!(out.contains(&format!("Object    {invoice}")), "{out}");
        let shown = printed_steps(&out);
        let pos = |step: &str| {
            shown
                .iter()
                .position(|s| s == step)
                .unwrap_or_else(|| panic!("no {step} step in {shown:?}:\n{out}"))
        };
        assert!(
            pos("received") < pos("fetched")
                && pos("fetched") < pos("mapped")
                && pos("mapped") < pos("posted")
                && pos("posted") < pos("payment_applied"),
            "{shown:?}"
        );
        let posted_line = out
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some("posted"))
            .unwrap();
        assert!(
            posted_line.contains(&format!("NetSuite invoice {ns_id} (stripe_{invoice})")),
            "{posted_line}"
        );

        let (ok, out, err) = cli(db.url(), &["replay", &evt]);
        assert!(ok, "replay failed: {err}");
        assert!(out.contains(&format!("{evt}: queued for replay")), "{out}");
        let (ok, out, _) = cli(db.url(), &["replay", "evt_NoSuchEvent"]);
        assert!(ok);
        assert!(
            out.contains("evt_NoSuchEvent: no such event is stored"),
            "{out}"
        );
        assert!(stack.wait_idle(SETTLE).await, "replay did not settle");

        let (ok, out, err) = cli(db.url(), &["events", "show", &evt]);
        assert!(ok, "{err}");
        let shown = printed_steps(&out);
        let last_replay = shown
            .iter()
            .rposition(|s| s == "replayed")
            .unwrap_or_else(|| panic!("no replayed step:\n{out}"));
        assert_eq!(
            shown[last_replay..],
            ["replayed", "already_posted", "succeeded"],
            "{out}"
        );
        assert_eq!(stack.netsuite_count(RecordType::Invoice), 1);
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 1);
        stack.stop().await.unwrap();
    }
}

/// A command run beside `serve` waits for SQLite's write lock while another process holds it
/// past the server's own 5 s busy timeout (a loaded machine's fsyncs), instead of failing with
/// "database is locked"; what it set is there afterwards.
#[tokio::test]
async fn a_command_waits_for_a_write_lock_held_past_five_seconds() {
    use sqlx::Connection as _;
    let db = mlc_store::testing::TestDb::sqlite().unwrap();
    db.store().await.close().await; // migrated, as `serve` leaves it
    // The default connection made first (as `serve` makes it), so the write that waits below is
    // the mapping's own: `BEGIN IMMEDIATE` on the store's pool, as `replay`'s is.
    let (ok, _, err) = cli(
        db.url(),
        &["mappings", "set", "prod_SetBeforeTheLock", "41"],
    );
    assert!(ok, "{err}");
    let mut holder = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let url = db.url().to_string();
    let command = tokio::task::spawn_blocking(move || {
        cli(&url, &["mappings", "set", "prod_WaitsForTheLock", "42"])
    });
    tokio::time::sleep(Duration::from_secs(7)).await;
    if command.is_finished() {
        let (ok, out, err) = command.await.unwrap();
        panic!("the command ended while another process held the lock (success: {ok}): {out}{err}");
    }
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let (ok, out, err) = command.await.unwrap();
    assert!(ok, "the command gave up waiting for the lock: {err}");
    assert!(
        out.contains("prod_WaitsForTheLock → NetSuite item 42"),
        "{out}"
    );
    let (ok, out, err) = cli(db.url(), &["mappings", "export", "--csv"]);
    assert!(ok, "{err}");
    assert!(out.contains("prod_SetBeforeTheLock,41"), "{out}");
    assert!(out.contains("prod_WaitsForTheLock,42"), "{out}");
}

#[tokio::test]
async fn a_fee_journal_that_failed_once_is_still_posted() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        opts.fees = "gross".into();
        let stack = Stack::start(opts).await.expect("stack starts");
        let api = StripeApi::of(&stack);
        let h = stack.netsuite.handle();
        let (product, price) = api.product("Gizmo", "9900").await;
        create_product_item(h, "Gizmo", &product).unwrap();
        let customer = api.customer("Epsilon AG", "epsilon@example.com").await;
        // NetSuite refuses the journal entry long enough for the client to give up once
        // (5 attempts): the event is retried later, after its invoice and payment exist.
        for _ in 0..5 {
            h.push_fault(mlc_netsuite_sim::QueuedFault {
                kind: mlc_netsuite_sim::FaultKind::ServerError,
                method: Some("POST".into()),
                path_contains: Some("/record/v1/journalentry".into()),
            });
        }
        let invoice = api.sell(&customer, &price, "1").await;
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");
        assert_eq!(h.queued_faults(), 0, "the faults were not hit");

        assert_eq!(stack.netsuite_count(RecordType::Invoice), 1);
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 1);
        let journals = h.ids(RecordType::JournalEntry);
        assert_eq!(
            journals.len(),
            1,
            "the fee of {invoice} was never posted after NetSuite failed once"
        );
        let je = h
            .get(RecordType::JournalEntry, &journals[0].to_string())
            .unwrap();
        assert!(
            je["externalId"]
                .as_str()
                .is_some_and(|e| e.starts_with("stripe_fee_ch_")),
            "{je}"
        );
        stack.stop().await.unwrap();
    }
}

#[tokio::test]
async fn with_the_finalized_trigger_the_invoice_posts_open_and_is_paid_later() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let mut opts = StackOptions::new(db.url(), keys.path());
        // Net mode needs the fee on the invoice, unknown until paid: finalized requires gross.
        opts.fees = "gross".into();
        opts.extra_env
            .push(("MLC__POSTING__INVOICE_TRIGGER".into(), "finalized".into()));
        let stack = Stack::start(opts).await.expect("stack starts");
        let api = StripeApi::of(&stack);
        let h = stack.netsuite.handle();
        let (product, price) = api.product("Consulting day", "120000").await;
        create_product_item(h, "Consulting day", &product).unwrap();
        let customer = api.customer("Zeta SA", "zeta@example.com").await;

        let invoice = api.finalized_invoice(&customer, &price, "2").await;
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");
        let eid = format!("eid:stripe_{invoice}");
        let open = h
            .get(RecordType::Invoice, &eid)
            .expect("posted when finalized");
        let lines = open["item"]["items"].as_array().unwrap();
        assert_eq!(lines.len(), 1, "{open}");
        assert_eq!(dec(&lines[0]["amount"]), Some(Decimal::new(240_000, 2)));
        assert_eq!(dec(&lines[0]["quantity"]), Some(Decimal::from(2)));
        assert_eq!(
            dec(&open["amountRemaining"]),
            Some(Decimal::new(240_000, 2)),
            "open in NetSuite until Stripe has the money"
        );
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 0);
        assert_eq!(stack.netsuite_count(RecordType::JournalEntry), 0);

        api.pay(&invoice).await;
        assert!(stack.wait_idle(SETTLE).await, "pipeline did not settle");
        assert_eq!(
            stack.netsuite_count(RecordType::Invoice),
            1,
            "not posted twice"
        );
        assert_eq!(stack.netsuite_count(RecordType::CustomerPayment), 1);
        assert_eq!(stack.netsuite_count(RecordType::JournalEntry), 1);
        let paid = h.get(RecordType::Invoice, &eid).unwrap();
        assert_eq!(dec(&paid["amountRemaining"]), Some(Decimal::ZERO), "{paid}");
        stack.stop().await.unwrap();
    }
}

/// With the finalized trigger an open invoice is in NetSuite before it is paid, so one Stripe
/// voids is credited in full and one it marks uncollectible is written off on the bad-debt item:
/// each a credit memo applied to the NetSuite invoice, which is then closed; once however often
/// the events come. Without a bad-debt item the write-off waits for a person.
#[tokio::test]
async fn a_posted_invoice_voided_or_uncollectible_in_stripe_is_closed_in_netsuite() {
    for db in backends().await {
        let keys = tempfile::tempdir().unwrap();
        let opts = StackOptions::new(db.url(), keys.path());
        let stack = Stack::start(opts.clone()).await.expect("stack starts");
        let tenant = stack
            .add_tenant("acme", "main", &opts, None)
            .await
            .expect("tenant connects");
        let h = tenant.netsuite.handle().clone();
        let stripe = tenant.stripe.as_ref().unwrap();
        let api = StripeApi {
            http: reqwest::Client::new(),
            base: stripe.base_url.clone(),
            key: stripe.api_key_str().to_string(),
        };
        // Finalized trigger (gross fees, as it requires), no bad-debt item yet.
        let settings_with = |bad_debt: Option<u64>| {
            let store = tenant.store.clone();
            async move {
                let tenants = store.store().tenant(&store.scope().tenant());
                let id = store.scope().connection_id().clone();
                let mut settings = tenants.get_connection(&id).await.unwrap().unwrap().settings;
                settings["posting"]["invoice_trigger"] = json!("finalized");
                settings["posting"]["fees"] = json!("gross");
                if let Some(item) = bad_debt {
                    settings["posting"]["bad_debt_item"] = json!(item.to_string());
                }
                let account = mlc_service::connections::check_settings(&settings).unwrap();
                tenants
                    .update_connection_details(&id, None, Some((settings, account)))
                    .await
                    .unwrap();
            }
        };
        settings_with(None).await;
        let (product, price) = api.product("Retainer", "50000").await;
        create_product_item(&h, "Retainer", &product).unwrap();
        let customer = api.customer("Omega AG", "omega@example.com").await;

        let voided = api.finalized_invoice(&customer, &price, "1").await;
        let written_off = api.finalized_invoice(&customer, &price, "2").await;
        assert!(tenant.wait_idle(SETTLE).await, "did not settle");
        assert_eq!(h.count(RecordType::Invoice), 2, "both posted open");

        api.post(&format!("/v1/invoices/{voided}/void"), &[]).await;
        api.post(
            &format!("/v1/invoices/{written_off}/mark_uncollectible"),
            &[],
        )
        .await;
        assert!(tenant.wait_idle(SETTLE).await, "did not settle");
        // The void is credited; the write-off waits for its item, saying which setting.
        let memo = h
            .get(RecordType::CreditMemo, &format!("eid:stripe_void_{voided}"))
            .expect("the void's credit memo");
        assert_eq!(dec(&memo["total"]), Some(Decimal::new(50_000, 2)), "{memo}");
        let invoice = h
            .get(RecordType::Invoice, &format!("eid:stripe_{voided}"))
            .unwrap();
        assert_eq!(
            dec(&invoice["amountRemaining"]),
            Some(Decimal::ZERO),
            "{invoice}"
        );
        assert_eq!(ref_id(&memo["entity"]), ref_id(&invoice["entity"]));
        let waiting = tenant
            .store
            .list_events(&EventFilter {
                status: Some("waiting".into()),
                limit: 10,
                ..EventFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(
            waiting[0]
                .last_error
                .as_deref()
                .unwrap_or_default()
                .contains("posting.bad_debt_item"),
            "{waiting:?}"
        );

        // The item set: the waiting write-off posts on it when replayed.
        let bad_debt = h
            .create(
                RecordType::ServiceSaleItem,
                json!({"itemId": "Bad debt", "displayName": "Bad debt", "subsidiary": {"id": "1"}, "includeChildren": true}),
            )
            .unwrap();
        settings_with(Some(bad_debt)).await;
        // The worker reads a connection's changed settings within seconds: replay until it did.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let writeoff = loop {
            tenant
                .store
                .requeue_event(&waiting[0].event_id)
                .await
                .unwrap();
            assert!(tenant.wait_idle(SETTLE).await, "did not settle");
            if let Some(memo) = h.get(
                RecordType::CreditMemo,
                &format!("eid:stripe_writeoff_{written_off}"),
            ) {
                break memo;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the write-off's credit memo"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        assert_eq!(dec(&writeoff["total"]), Some(Decimal::new(100_000, 2)));
        let lines = writeoff["item"]["items"].as_array().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(ref_id(&lines[0]["item"]), bad_debt.to_string());
        let invoice = h
            .get(RecordType::Invoice, &format!("eid:stripe_{written_off}"))
            .unwrap();
        assert_eq!(
            dec(&invoice["amountRemaining"]),
            Some(Decimal::ZERO),
            "{invoice}"
        );

        // Every event again: nothing new.
        let before = (
            h.count(RecordType::Invoice),
            h.count(RecordType::CreditMemo),
        );
        tenant
            .store
            .requeue_where(JobState::Succeeded, None)
            .await
            .unwrap();
        assert!(tenant.wait_idle(SETTLE).await, "did not settle");
        assert_eq!(
            (
                h.count(RecordType::Invoice),
                h.count(RecordType::CreditMemo)
            ),
            before
        );
        stack.stop().await.unwrap();
    }
}
