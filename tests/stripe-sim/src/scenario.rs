//! A realistic SaaS month played through the simulator's HTTP API (never its internal state):
//! products and prices in several currencies (incl. JPY and KWD), customers, paid and failed
//! subscriptions, renewals, manual invoices, one-time Checkout charges and refunds, and on request
//! refunds that fail, chargebacks won and lost, and the automatic payouts of it all.
//! Deterministic for a seed; the report lists what was created and the expected totals.

use std::collections::BTreeMap;
use std::time::Duration;

use mlc_core::Currency;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::SimError;

/// What to play.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioConfig {
    /// Seed for every choice the scenario makes.
    pub seed: u64,
    /// Number of customers.
    pub customers: usize,
    /// Currencies customers are spread over.
    pub currencies: Vec<Currency>,
    /// Name of a product sold only via Checkout that the connector deliberately has no mapping for.
    pub unmapped_product_name: String,
    /// Percent of customers whose card declines (subscription invoice stays open, or checkout fails).
    pub failed_payment_percent: u32,
    /// Percent of customers who also buy one-time items through Checkout.
    pub checkout_percent: u32,
    /// Percent of subscriptions billed yearly.
    pub annual_percent: u32,
    /// Percent of monthly subscriptions renewed once during the month.
    pub renewal_percent: u32,
    /// Percent of subscriptions with a 10% coupon.
    pub coupon_percent: u32,
    /// Number of refunds of one-time charges (the first is partial).
    pub refunds: usize,
    /// Number of manual invoices (invoice item + finalize + pay).
    pub manual_invoices: usize,
    /// Number of chargebacks on succeeded, unrefunded charges (one-time charges first, then
    /// invoice charges), resolved alternately won and lost (the first won). Default 0.
    pub disputes: usize,
    /// Number of the scenario's refunds (the last ones) that then fail at the card network
    /// (`lost_or_stolen_card`). Default 0.
    pub failed_refunds: usize,
    /// Number of credit notes on the month's invoices, cycling through four kinds: a
    /// post-payment one refunded in full, a post-payment one split between a refund and a
    /// customer balance credit, a pre-payment one on an open invoice (out of band on a paid
    /// invoice when none is open), and a customer balance credit voided after creation.
    /// Default 0.
    pub credit_notes: usize,
    /// After everything else (sales, refunds, credit notes, disputes), run Stripe's automatic
    /// payouts once (`POST /_sim/payouts/run`) and mark each paid (its reconciliation then
    /// completes). Default false: nothing is paid out and the ids of a seed do not change.
    pub payouts: bool,
    /// Number of those payouts (the last ones) that then fail (`account_closed`); their amount
    /// comes back to the balance. Only with `payouts`. Default 0.
    pub failed_payouts: usize,
    /// Called once products and prices exist, before anything is sold (so a test or the demo
    /// can create the matching NetSuite items first). Not serialised.
    #[serde(skip)]
    pub on_catalog: Option<CatalogHook>,
}

/// The future a [`CatalogHook`] returns.
pub type CatalogFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A callback receiving the catalog (product name → product ID) and the unmapped product's ID.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct CatalogHook(
    pub std::sync::Arc<dyn Fn(BTreeMap<String, String>, String) -> CatalogFuture + Send + Sync>,
);

impl std::fmt::Debug for CatalogHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogHook")
    }
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            seed: 7,
            customers: 50,
            currencies: vec![Currency::USD, Currency::EUR, Currency::JPY, Currency::KWD],
            unmapped_product_name: "Legacy Add-on (deliberately unmapped)".into(),
            failed_payment_percent: 10,
            checkout_percent: 40,
            annual_percent: 20,
            renewal_percent: 50,
            coupon_percent: 15,
            refunds: 3,
            manual_invoices: 3,
            disputes: 0,
            failed_refunds: 0,
            credit_notes: 0,
            payouts: false,
            failed_payouts: 0,
            on_catalog: None,
        }
    }
}

/// Expected totals for one presentment currency (minor units of that currency).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CurrencyTotals {
    /// Number of paid invoices.
    pub paid_invoices: u32,
    /// Sum of `total` of paid invoices.
    pub paid_invoice_total: i64,
    /// Sum of exclusive tax on paid invoices.
    pub paid_invoice_tax: i64,
    /// Sum of discounts on paid invoices.
    pub paid_invoice_discount: i64,
    /// Number of succeeded one-time (Checkout) charges.
    pub standalone_charges: u32,
    /// Sum of succeeded one-time charge amounts.
    pub standalone_charge_total: i64,
    /// Sum of refunds (including those that later failed; see `failed_refund_total`), credit
    /// notes' refunds included.
    pub refunded_total: i64,
    /// Sum of the refunds that failed after they were made (their money came back).
    pub failed_refund_total: i64,
    /// Sum of disputed amounts (chargebacks).
    pub disputed_total: i64,
    /// Failed payment attempts (declines).
    pub failed_payments: u32,
    /// Invoices left open after a decline.
    pub open_invoices: u32,
    /// Succeeded charges in this currency (invoice and one-time), as settled: gross amount in
    /// the settlement currency (see [`SettlementTotals::currency`]).
    pub settled_gross: i64,
    /// Fees of those charges, in the settlement currency.
    pub settled_fees: i64,
    /// Refunds of charges in this currency, in the settlement currency (negative).
    pub settled_refunds: i64,
    /// `refund_failure` balance transactions of those refunds, in the settlement currency
    /// (positive).
    pub settled_refund_failures: i64,
    /// Dispute `adjustment` balance transactions of charges in this currency, in the settlement
    /// currency: withdrawals (negative) plus reinstatements (positive).
    pub settled_disputes: i64,
    /// Dispute fees of those transactions, in the settlement currency (positive; a returned fee
    /// counts negative).
    pub settled_dispute_fees: i64,
}

/// Settlement totals from balance transactions (in the account currency).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettlementTotals {
    /// Settlement currency.
    pub currency: String,
    /// Sum of charge balance transaction amounts.
    pub gross: i64,
    /// Sum of fees.
    pub fees: i64,
    /// Sum of refund balance transaction amounts (negative).
    pub refunds: i64,
    /// Sum of `refund_failure` balance transaction amounts (positive).
    pub refund_failures: i64,
    /// Sum of dispute `adjustment` balance transaction amounts (withdrawals negative,
    /// reinstatements positive).
    pub disputes: i64,
    /// Sum of the fees of those dispute transactions.
    pub dispute_fees: i64,
    /// gross - fees + refunds + refund_failures + disputes - dispute_fees.
    pub net: i64,
}

/// A price the scenario created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceInfo {
    /// `price_…`
    pub id: String,
    /// `prod_…`
    pub product: String,
    /// Currency.
    pub currency: String,
    /// Unit amount in minor units.
    pub unit_amount: i64,
    /// `month`, `year`, or `None` for one-time.
    pub interval: Option<String>,
}

/// A refund the scenario made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundInfo {
    /// `re_…`
    pub id: String,
    /// `ch_…`
    pub charge: String,
    /// Amount in minor units.
    pub amount: i64,
    /// Currency.
    pub currency: String,
}

/// A chargeback the scenario opened and resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeInfo {
    /// `dp_…`
    pub id: String,
    /// `ch_…`
    pub charge: String,
    /// Presentment currency (the charge's).
    pub currency: String,
    /// Disputed amount in minor units of `currency`.
    pub amount: i64,
    /// `won` or `lost`.
    pub outcome: String,
    /// The withdrawal balance transaction's amount, in the settlement currency (negative).
    pub withdrawn_amount: i64,
    /// Its dispute fee, in the settlement currency (positive).
    pub withdrawn_fee: i64,
    /// The reinstatement balance transaction's amount when won (positive), else 0.
    pub reinstated_amount: i64,
    /// Its fee: minus the dispute fee when the fee was returned, else 0.
    pub reinstated_fee: i64,
}

/// A credit note the scenario issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditNoteInfo {
    /// `cn_…`
    pub id: String,
    /// `in_…`
    pub invoice: String,
    /// Currency (the invoice's).
    pub currency: String,
    /// Total credited, tax included, in minor units.
    pub total: i64,
    /// `pre_payment` (on an open invoice: lowers what is due) or `post_payment`.
    pub kind: String,
    /// Refunded on the invoice's charge.
    pub refund_amount: i64,
    /// Credited to the customer's balance.
    pub credit_amount: i64,
    /// Credited outside of Stripe.
    pub out_of_band_amount: i64,
    /// The refund (`re_…`) when there is one.
    pub refund: Option<String>,
    /// Voided after it was issued (its customer credit taken back).
    pub voided: bool,
}

/// A payout the scenario made (automatic, one per settlement currency with a positive balance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutInfo {
    /// `po_…`
    pub id: String,
    /// Settlement currency.
    pub currency: String,
    /// Amount paid out, in minor units: the sum of the covered transactions' `net`.
    pub amount: i64,
    /// True for Stripe's automatic payouts.
    pub automatic: bool,
    /// Final status: `paid`, or `failed` for the ones made to fail.
    pub status: String,
    /// Balance transactions the payout covered (`GET /v1/balance_transactions?payout=po_…`),
    /// not counting the payout's own `payout` transaction.
    pub covered_transactions: usize,
    /// `completed` once paid (automatic payouts).
    pub reconciliation_status: String,
    /// The payout's own balance transaction (`type: payout`, amount `-amount`).
    pub balance_transaction: String,
    /// For a failed payout, the `payout_failure` transaction returning the amount.
    pub failure_balance_transaction: Option<String>,
}

/// What the scenario created and the totals a reconciler should find.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// Seed used.
    pub seed: u64,
    /// Products by name.
    pub products: BTreeMap<String, String>,
    /// The deliberately unmapped product id.
    pub unmapped_product: String,
    /// Prices.
    pub prices: Vec<PriceInfo>,
    /// Customer ids.
    pub customers: Vec<String>,
    /// Subscription ids.
    pub subscriptions: Vec<String>,
    /// Paid invoice ids (subscription, renewal and manual).
    pub paid_invoices: Vec<String>,
    /// Invoices left open after a declined payment.
    pub open_invoices: Vec<String>,
    /// Completed Checkout Session ids.
    pub checkout_sessions: Vec<String>,
    /// Succeeded one-time charges (not attached to invoices).
    pub standalone_charges: Vec<String>,
    /// Declined charges (any origin).
    pub failed_charges: Vec<String>,
    /// Refunds (all of them, including those that then failed).
    pub refunds: Vec<RefundInfo>,
    /// Refunds (`re_…`) that failed after they were made.
    #[serde(default)]
    pub failed_refunds: Vec<String>,
    /// Chargebacks and how they ended.
    #[serde(default)]
    pub disputes: Vec<DisputeInfo>,
    /// Credit notes.
    #[serde(default)]
    pub credit_notes: Vec<CreditNoteInfo>,
    /// Payouts (only with [`ScenarioConfig::payouts`]).
    #[serde(default)]
    pub payouts: Vec<PayoutInfo>,
    /// Coupon id and tax rate id used.
    pub coupon: String,
    /// Tax rate applied to EUR subscriptions.
    pub tax_rate: String,
    /// Totals per presentment currency.
    pub totals: BTreeMap<String, CurrencyTotals>,
    /// Totals in the settlement currency from balance transactions.
    pub settlement: SettlementTotals,
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
    counter: u64,
    seed: u64,
}

impl Api {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        params: &Value,
    ) -> Result<(u16, Value), SimError> {
        self.counter += 1;
        // Deterministic idempotency keys so a retried POST (after an injected 429/500) is safe.
        let idem = format!("scenario-{}-{}", self.seed, self.counter);
        let body = crate::form::encode(params);
        let mut last = String::new();
        for attempt in 0..12u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 * (1 << attempt.min(6)))).await;
            }
            let url = if method == reqwest::Method::GET && !body.is_empty() {
                format!("{}{path}?{body}", self.base)
            } else {
                format!("{}{path}", self.base)
            };
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.key);
            if method == reqwest::Method::POST {
                req = req
                    .header("Idempotency-Key", &idem)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status == 429 || status >= 500 {
                last = format!("status {status}");
                continue;
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| SimError::Unexpected {
                path: path.into(),
                message: e.to_string(),
            })?;
            return Ok((status, v));
        }
        Err(SimError::Transport {
            method: method.to_string(),
            path: path.into(),
            message: last,
        })
    }

    async fn ok(
        &mut self,
        method: reqwest::Method,
        path: &str,
        params: Value,
    ) -> Result<Value, SimError> {
        let (status, v) = self.call(method.clone(), path, &params).await?;
        if status != 200 {
            return Err(SimError::Api {
                method: method.to_string(),
                path: path.into(),
                status,
                body: v.to_string(),
            });
        }
        Ok(v)
    }

    async fn post(&mut self, path: &str, params: Value) -> Result<Value, SimError> {
        self.ok(reqwest::Method::POST, path, params).await
    }

    async fn get(&mut self, path: &str, params: Value) -> Result<Value, SimError> {
        self.ok(reqwest::Method::GET, path, params).await
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

/// Scales a USD list price to another currency (rounded to the currency's step).
fn local_amount(usd_cents: i64, cur: Currency) -> i64 {
    let table = match cur.as_str() {
        "usd" => return usd_cents,
        "eur" => (92, 100, 2),
        "gbp" => (79, 100, 2),
        "jpy" => (150, 1, 0),
        "kwd" => (307, 1000, 3),
        _ => (1, 1, 2),
    };
    let (num, den, exp) = table;
    // usd_cents / 100 * num/den * 10^exp
    let raw = usd_cents as i128 * num as i128 * 10_i128.pow(exp) / (100 * den as i128);
    let step = match exp {
        0 => 10,
        3 => 100,
        _ => 100,
    } as i128;
    ((raw + step / 2) / step * step) as i64
}

/// Runs the scenario against `base_url` with `api_key`.
pub async fn run_scenario(
    base_url: &str,
    api_key: &str,
    cfg: ScenarioConfig,
) -> Result<ScenarioReport, SimError> {
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| SimError::Client(e.to_string()))?;
    let mut api = Api {
        http,
        base: base_url.trim_end_matches('/').to_string(),
        key: api_key.to_string(),
        counter: 0,
        seed: cfg.seed,
    };
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut rep = ScenarioReport {
        seed: cfg.seed,
        ..Default::default()
    };
    let account = api.get("/v1/account", json!({})).await?;
    let settle = account["default_currency"]
        .as_str()
        .unwrap_or("usd")
        .to_string();
    let currencies = if cfg.currencies.is_empty() {
        vec![Currency::USD]
    } else {
        cfg.currencies.clone()
    };
    for c in &currencies {
        rep.totals
            .insert(c.as_str().to_string(), CurrencyTotals::default());
    }

    let vat = api.post("/v1/tax_rates", json!({"display_name": "VAT", "percentage": "20", "inclusive": "false", "country": "DE", "jurisdiction": "DE"})).await?;
    rep.tax_rate = id_of(&vat);
    let coupon = api
        .post(
            "/v1/coupons",
            json!({"percent_off": "10", "duration": "forever", "name": "Launch 10%"}),
        )
        .await?;
    rep.coupon = id_of(&coupon);

    // name, USD list price, recurring?
    let catalog: Vec<(&str, i64, bool)> = vec![
        ("Pro Plan", 2_900, true),
        ("Team Plan", 9_900, true),
        ("Onboarding Package", 50_000, false),
        ("Priority Support", 12_000, false),
        (cfg.unmapped_product_name.as_str(), 1_500, false),
    ];
    // prices[(product name, currency, interval)] = price id
    let mut price_ids: BTreeMap<(String, String, String), (String, i64)> = BTreeMap::new();
    for (name, usd, recurring) in &catalog {
        let prod = api
            .post(
                "/v1/products",
                json!({"name": name, "metadata": {"sku": name.to_lowercase().replace(' ', "-")}}),
            )
            .await?;
        let pid = id_of(&prod);
        rep.products.insert(name.to_string(), pid.clone());
        if *name == cfg.unmapped_product_name {
            rep.unmapped_product = pid.clone();
        }
        for c in &currencies {
            let intervals: Vec<Option<&str>> = if *recurring {
                vec![Some("month"), Some("year")]
            } else {
                vec![None]
            };
            for iv in intervals {
                let amount = local_amount(if iv == Some("year") { usd * 10 } else { *usd }, *c);
                let mut params = json!({"product": pid, "currency": c.as_str(), "unit_amount": amount.to_string()});
                if let Some(i) = iv {
                    params["recurring"] = json!({"interval": i});
                }
                let price = api.post("/v1/prices", params).await?;
                price_ids.insert(
                    (
                        name.to_string(),
                        c.as_str().to_string(),
                        iv.unwrap_or("one_time").to_string(),
                    ),
                    (id_of(&price), amount),
                );
                rep.prices.push(PriceInfo {
                    id: id_of(&price),
                    product: pid.clone(),
                    currency: c.as_str().into(),
                    unit_amount: amount,
                    interval: iv.map(str::to_string),
                });
            }
        }
    }

    if let Some(hook) = &cfg.on_catalog {
        (hook.0)(rep.products.clone(), rep.unmapped_product.clone()).await;
    }

    const FIRST: &[&str] = &[
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Linus",
        "Frances", "John",
    ];
    const LAST: &[&str] = &[
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson",
        "Perlman", "Torvalds", "Allen", "Backus",
    ];
    let mut checkout_candidates = Vec::new();
    let mut monthly_active = Vec::new();
    for i in 0..cfg.customers {
        let cur = currencies[rng.random_range(0..currencies.len())];
        let fails = rng.random_range(0..100) < cfg.failed_payment_percent;
        let card = if fails {
            "pm_card_chargeCustomerFail"
        } else {
            "pm_card_visa"
        };
        let name = format!(
            "{} {}",
            FIRST[rng.random_range(0..FIRST.len())],
            LAST[rng.random_range(0..LAST.len())]
        );
        let cust = api
            .post(
                "/v1/customers",
                json!({
                    "name": name, "email": format!("customer{:03}@example.com", i + 1),
                    "payment_method": card, "invoice_settings": {"default_payment_method": card},
                    "metadata": {"crm_id": format!("CRM-{:05}", 1000 + i)},
                }),
            )
            .await?;
        let cid = id_of(&cust);
        rep.customers.push(cid.clone());
        let plan = if rng.random_range(0..100) < 70 {
            "Pro Plan"
        } else {
            "Team Plan"
        };
        let annual = rng.random_range(0..100) < cfg.annual_percent;
        let interval = if annual { "year" } else { "month" };
        let (price, _) = price_ids[&(
            plan.to_string(),
            cur.as_str().to_string(),
            interval.to_string(),
        )]
            .clone();
        let seats = if plan == "Team Plan" {
            rng.random_range(2..=8)
        } else {
            1
        };
        let mut params =
            json!({"customer": cid, "items": [{"price": price, "quantity": seats.to_string()}]});
        if cur == Currency::EUR {
            params["default_tax_rates"] = json!([rep.tax_rate]);
        }
        if rng.random_range(0..100) < cfg.coupon_percent {
            params["discounts"] = json!([{"coupon": rep.coupon}]);
        }
        let sub = api.post("/v1/subscriptions", params).await?;
        rep.subscriptions.push(id_of(&sub));
        let inv_id = sub["latest_invoice"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        record_invoice(&mut api, &mut rep, &inv_id).await?;
        if sub["status"] == "active" && !annual && rng.random_range(0..100) < cfg.renewal_percent {
            monthly_active.push(id_of(&sub));
        }
        if rng.random_range(0..100) < cfg.checkout_percent {
            checkout_candidates.push((cid, cur, fails));
        }
    }

    // Renewals during the month.
    for sub in monthly_active {
        let s = api
            .post(&format!("/_sim/subscriptions/{sub}/renew"), json!({}))
            .await?;
        let inv = s["latest_invoice"].as_str().unwrap_or_default().to_string();
        record_invoice(&mut api, &mut rep, &inv).await?;
    }

    // Manual invoices for services.
    for k in 0..cfg.manual_invoices.min(rep.customers.len()) {
        let cid = rep.customers[rng.random_range(0..rep.customers.len())].clone();
        let cust = api.get(&format!("/v1/customers/{cid}"), json!({})).await?;
        let dpm = cust["invoice_settings"]["default_payment_method"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let pm = api
            .get(&format!("/v1/payment_methods/{dpm}"), json!({}))
            .await?;
        if pm["card"]["last4"] == "0341" {
            continue; // a failing card; keep manual invoices paid
        }
        let cur = currencies[k % currencies.len()];
        let inv = api.post("/v1/invoices", json!({"customer": cid, "currency": cur.as_str(), "description": "Professional services"})).await?;
        let inv_id = id_of(&inv);
        let hours = rng.random_range(2..=10);
        let unit = local_amount(15_000, cur);
        api.post("/v1/invoiceitems", json!({"customer": cid, "invoice": inv_id, "currency": cur.as_str(), "unit_amount_decimal": unit.to_string(), "quantity": hours.to_string(), "description": format!("Implementation work ({hours} h)")})).await?;
        api.post(&format!("/v1/invoices/{inv_id}/finalize"), json!({}))
            .await?;
        api.post(&format!("/v1/invoices/{inv_id}/pay"), json!({}))
            .await?;
        record_invoice(&mut api, &mut rep, &inv_id).await?;
    }

    // One-time purchases through Checkout.
    for (cid, cur, fails) in checkout_candidates {
        let mut items = vec![
            json!({"price": price_ids[&("Onboarding Package".to_string(), cur.as_str().to_string(), "one_time".to_string())].0, "quantity": "1"}),
        ];
        if rng.random_bool(0.5) {
            items.push(json!({"price": price_ids[&("Priority Support".to_string(), cur.as_str().to_string(), "one_time".to_string())].0, "quantity": rng.random_range(1..=3).to_string()}));
        }
        if rng.random_range(0..100) < 30 {
            items.push(json!({"price": price_ids[&(cfg.unmapped_product_name.clone(), cur.as_str().to_string(), "one_time".to_string())].0, "quantity": "1"}));
        }
        let sess = api.post("/v1/checkout/sessions", json!({"mode": "payment", "customer": cid, "line_items": items, "success_url": "https://example.com/thanks"})).await?;
        let sid = id_of(&sess);
        let card = if fails {
            "pm_card_chargeDeclined"
        } else {
            "pm_card_visa"
        };
        let (status, v) = api
            .call(
                reqwest::Method::POST,
                &format!("/_sim/checkout/sessions/{sid}/complete"),
                &json!({"payment_method": card}),
            )
            .await?;
        let t = rep.totals.entry(cur.as_str().to_string()).or_default();
        if status == 200 {
            let pi = v["payment_intent"].as_str().unwrap_or_default().to_string();
            let pi_v = api
                .get(&format!("/v1/payment_intents/{pi}"), json!({}))
                .await?;
            let t = rep.totals.entry(cur.as_str().to_string()).or_default();
            t.standalone_charges += 1;
            t.standalone_charge_total += v["amount_total"].as_i64().unwrap_or(0);
            rep.standalone_charges.push(
                pi_v["latest_charge"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            rep.checkout_sessions.push(sid);
        } else {
            t.failed_payments += 1;
            if let Some(ch) = v["error"]["charge"].as_str() {
                rep.failed_charges.push(ch.to_string());
            }
        }
    }

    // Refunds: the first partial (half), the rest full.
    let refundable = rep.standalone_charges.clone();
    for (k, ch) in refundable.iter().take(cfg.refunds).enumerate() {
        let charge = api.get(&format!("/v1/charges/{ch}"), json!({})).await?;
        let cur =
            Currency::parse(charge["currency"].as_str().unwrap_or("usd")).unwrap_or(Currency::USD);
        let amount = charge["amount"].as_i64().unwrap_or(0);
        let amt = if k == 0 {
            (amount / 2) / cur.amount_step() * cur.amount_step()
        } else {
            amount
        };
        let re = api
            .post(
                "/v1/refunds",
                json!({"charge": ch, "amount": amt.to_string(), "reason": "requested_by_customer"}),
            )
            .await?;
        rep.totals
            .entry(cur.as_str().to_string())
            .or_default()
            .refunded_total += amt;
        rep.refunds.push(RefundInfo {
            id: id_of(&re),
            charge: ch.clone(),
            amount: amt,
            currency: cur.as_str().into(),
        });
    }

    if cfg.credit_notes > 0 {
        credit_notes(&mut api, &mut rep, cfg.credit_notes).await?;
    }

    // Some refunds fail at the card network after they were made (the last ones).
    let first_failing = rep.refunds.len().saturating_sub(cfg.failed_refunds);
    let failing: Vec<RefundInfo> = rep.refunds[first_failing..].to_vec();
    for r in failing {
        let re = api
            .post(
                &format!("/_sim/refunds/{}/fail", r.id),
                json!({"expand": ["failure_balance_transaction"]}),
            )
            .await?;
        let t = rep.totals.entry(r.currency.clone()).or_default();
        t.failed_refund_total += r.amount;
        t.settled_refund_failures += re["failure_balance_transaction"]["amount"]
            .as_i64()
            .unwrap_or(0);
        rep.failed_refunds.push(r.id);
    }

    // Chargebacks: alternately won and lost.
    if cfg.disputes > 0 {
        let refunded: Vec<&str> = rep.refunds.iter().map(|r| r.charge.as_str()).collect();
        let mut candidates: Vec<String> = rep
            .standalone_charges
            .iter()
            .filter(|c| !refunded.contains(&c.as_str()))
            .cloned()
            .collect();
        if candidates.len() < cfg.disputes {
            let mut after: Option<String> = None;
            loop {
                let mut q = json!({"limit": "100"});
                if let Some(a) = &after {
                    q["starting_after"] = json!(a);
                }
                let page = api.get("/v1/charges", q).await?;
                let data = page["data"].as_array().cloned().unwrap_or_default();
                for ch in &data {
                    let id = id_of(ch);
                    if ch["status"] == "succeeded"
                        && ch["disputed"] == json!(false)
                        && ch["amount_refunded"] == json!(0)
                        && !refunded.contains(&id.as_str())
                        && !candidates.contains(&id)
                    {
                        candidates.push(id);
                    }
                }
                after = data.last().map(id_of);
                if page["has_more"] != json!(true) || after.is_none() {
                    break;
                }
            }
        }
        const REASONS: &[&str] = &[
            "fraudulent",
            "product_not_received",
            "duplicate",
            "subscription_canceled",
        ];
        for (k, ch) in candidates.iter().take(cfg.disputes).enumerate() {
            let dp = api
                .post(
                    &format!("/_sim/charges/{ch}/dispute"),
                    json!({"reason": REASONS[k % REASONS.len()]}),
                )
                .await?;
            let outcome = if k % 2 == 0 { "won" } else { "lost" };
            let dp = api
                .post(
                    &format!("/_sim/disputes/{}/resolve", id_of(&dp)),
                    json!({"outcome": outcome}),
                )
                .await?;
            let txns = dp["balance_transactions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let field = |i: usize, k: &str| txns.get(i).and_then(|t| t[k].as_i64()).unwrap_or(0);
            let info = DisputeInfo {
                id: id_of(&dp),
                charge: ch.clone(),
                currency: dp["currency"].as_str().unwrap_or("usd").to_string(),
                amount: dp["amount"].as_i64().unwrap_or(0),
                outcome: outcome.to_string(),
                withdrawn_amount: field(0, "amount"),
                withdrawn_fee: field(0, "fee"),
                reinstated_amount: field(1, "amount"),
                reinstated_fee: field(1, "fee"),
            };
            let t = rep.totals.entry(info.currency.clone()).or_default();
            t.disputed_total += info.amount;
            t.settled_disputes += info.withdrawn_amount + info.reinstated_amount;
            t.settled_dispute_fees += info.withdrawn_fee + info.reinstated_fee;
            rep.disputes.push(info);
        }
    }

    if cfg.payouts {
        payouts(&mut api, &mut rep, cfg.failed_payouts).await?;
    }

    // Per presentment currency: settled amounts and fees of charges and refunds.
    for (path, is_refund) in [("/v1/charges", false), ("/v1/refunds", true)] {
        let mut after: Option<String> = None;
        loop {
            let mut q = json!({"limit": "100", "expand": ["data.balance_transaction"]});
            if let Some(a) = &after {
                q["starting_after"] = json!(a);
            }
            let page = api.get(path, q).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            for x in &data {
                let txn = &x["balance_transaction"];
                if !txn.is_object() {
                    continue; // failed charges have no balance transaction
                }
                let t = rep
                    .totals
                    .entry(x["currency"].as_str().unwrap_or("usd").to_string())
                    .or_default();
                if is_refund {
                    t.settled_refunds += txn["amount"].as_i64().unwrap_or(0);
                } else {
                    t.settled_gross += txn["amount"].as_i64().unwrap_or(0);
                    t.settled_fees += txn["fee"].as_i64().unwrap_or(0);
                }
            }
            after = data.last().map(id_of);
            if page["has_more"] != json!(true) || after.is_none() {
                break;
            }
        }
    }

    // Settlement totals from the balance transactions, read back through the API.
    let mut st = SettlementTotals {
        currency: settle,
        ..Default::default()
    };
    let mut after: Option<String> = None;
    loop {
        let mut q = json!({"limit": "100"});
        if let Some(a) = &after {
            q["starting_after"] = json!(a);
        }
        let page = api.get("/v1/balance_transactions", q).await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        for t in &data {
            match t["type"].as_str() {
                Some("charge") => {
                    st.gross += t["amount"].as_i64().unwrap_or(0);
                    st.fees += t["fee"].as_i64().unwrap_or(0);
                }
                Some("refund") => st.refunds += t["amount"].as_i64().unwrap_or(0),
                Some("refund_failure") => st.refund_failures += t["amount"].as_i64().unwrap_or(0),
                Some("adjustment")
                    if matches!(
                        t["reporting_category"].as_str(),
                        Some("dispute" | "dispute_reversal")
                    ) =>
                {
                    st.disputes += t["amount"].as_i64().unwrap_or(0);
                    st.dispute_fees += t["fee"].as_i64().unwrap_or(0);
                }
                _ => {}
            }
        }
        after = data.last().map(id_of);
        if page["has_more"] != json!(true) || after.is_none() {
            break;
        }
    }
    st.net = st.gross - st.fees + st.refunds + st.refund_failures + st.disputes - st.dispute_fees;
    rep.settlement = st;
    Ok(rep)
}

/// Automatic payouts of everything not yet paid out, each marked paid; the last `failed` then
/// fail.
async fn payouts(api: &mut Api, rep: &mut ScenarioReport, failed: usize) -> Result<(), SimError> {
    let run = api.post("/_sim/payouts/run", json!({})).await?;
    let mut ids: Vec<String> = run["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    ids.reverse(); // oldest first
    for id in &ids {
        api.post(&format!("/_sim/payouts/{id}/paid"), json!({}))
            .await?;
    }
    let first_failing = ids.len().saturating_sub(failed);
    for id in &ids[first_failing..] {
        api.post(&format!("/_sim/payouts/{id}/fail"), json!({}))
            .await?;
    }
    for id in ids {
        let po = api.get(&format!("/v1/payouts/{id}"), json!({})).await?;
        let mut covered = 0usize;
        let mut after: Option<String> = None;
        loop {
            let mut q = json!({"payout": id, "limit": "100"});
            if let Some(a) = &after {
                q["starting_after"] = json!(a);
            }
            let page = api.get("/v1/balance_transactions", q).await?;
            let data = page["data"].as_array().cloned().unwrap_or_default();
            covered += data.iter().filter(|t| t["source"] != json!(id)).count();
            after = data.last().map(id_of);
            if page["has_more"] != json!(true) || after.is_none() {
                break;
            }
        }
        let text = |k: &str| po[k].as_str().unwrap_or_default().to_string();
        rep.payouts.push(PayoutInfo {
            currency: text("currency"),
            amount: po["amount"].as_i64().unwrap_or(0),
            automatic: po["automatic"] == json!(true),
            status: text("status"),
            covered_transactions: covered,
            reconciliation_status: text("reconciliation_status"),
            balance_transaction: text("balance_transaction"),
            failure_balance_transaction: po["failure_balance_transaction"]
                .as_str()
                .map(str::to_string),
            id,
        });
    }
    Ok(())
}

/// Credit notes on the month's invoices (one invoice each), cycling through four kinds.
async fn credit_notes(api: &mut Api, rep: &mut ScenarioReport, n: usize) -> Result<(), SimError> {
    let (mut next_paid, mut next_open) = (0usize, 0usize);
    for k in 0..n {
        let pre_payment = k % 4 == 2 && next_open < rep.open_invoices.len();
        let inv_id = if pre_payment {
            next_open += 1;
            rep.open_invoices[next_open - 1].clone()
        } else if next_paid < rep.paid_invoices.len() {
            next_paid += 1;
            rep.paid_invoices[next_paid - 1].clone()
        } else {
            break;
        };
        let inv = api
            .get(&format!("/v1/invoices/{inv_id}"), json!({}))
            .await?;
        let cur =
            Currency::parse(inv["currency"].as_str().unwrap_or("usd")).unwrap_or(Currency::USD);
        let step = cur.amount_step();
        let first = &inv["lines"]["data"][0];
        let half = {
            let a = first["amount"].as_i64().unwrap_or(0);
            let h = (a / 2) / step * step;
            if h > 0 { h } else { a }
        };
        let part_line = json!([{"type": "invoice_line_item", "invoice_line_item": first["id"], "amount": half.to_string()}]);
        let mut params = json!({"invoice": inv_id, "reason": "order_change"});
        let mut void = false;
        match (k % 4, pre_payment) {
            (0, _) => {
                // Everything on the invoice, refunded in full.
                let lines: Vec<Value> = inv["lines"]["data"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| json!({"type": "invoice_line_item", "invoice_line_item": l["id"], "quantity": l["quantity"].as_i64().unwrap_or(1).to_string()}))
                    .collect();
                params["lines"] = json!(lines);
                params["reason"] = json!("product_unsatisfactory");
                let pv = api.get("/v1/credit_notes/preview", params.clone()).await?;
                params["refund_amount"] = json!(pv["total"].as_i64().unwrap_or(0).to_string());
            }
            (1, _) => {
                // Half of the first line: part refunded, the rest credited to the customer.
                params["lines"] = part_line;
                let pv = api.get("/v1/credit_notes/preview", params.clone()).await?;
                let total = pv["total"].as_i64().unwrap_or(0);
                let refund = (total / 2) / step * step;
                params["refund_amount"] = json!(refund.to_string());
                params["credit_amount"] = json!((total - refund).to_string());
            }
            (2, true) => {
                // Lowers what the open invoice still asks for.
                params["lines"] = part_line;
            }
            (2, false) => {
                params["lines"] = part_line;
                let pv = api.get("/v1/credit_notes/preview", params.clone()).await?;
                params["out_of_band_amount"] = json!(pv["total"].as_i64().unwrap_or(0).to_string());
            }
            _ => {
                // A goodwill credit to the customer's balance, then voided.
                let quarter = (inv["total"].as_i64().unwrap_or(0) / 4) / step * step;
                params["lines"] = json!([{"type": "custom_line_item", "unit_amount": quarter.max(step).to_string(), "description": "Goodwill credit"}]);
                params["reason"] = json!("duplicate");
                void = true;
            }
        }
        let cn = api.post("/v1/credit_notes", params).await?;
        let cn_id = id_of(&cn);
        if void {
            api.post(&format!("/v1/credit_notes/{cn_id}/void"), json!({}))
                .await?;
        }
        let refund = cn["refunds"][0]["refund"].as_str().map(str::to_string);
        let refund_amount: i64 = cn["refunds"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["amount_refunded"].as_i64()).sum())
            .unwrap_or(0);
        let total = cn["total"].as_i64().unwrap_or(0);
        let out_of_band = cn["out_of_band_amount"].as_i64().unwrap_or(0);
        let kind = cn["type"].as_str().unwrap_or_default().to_string();
        let credit_amount = if kind == "post_payment" {
            total - refund_amount - out_of_band
        } else {
            0
        };
        rep.totals
            .entry(cur.as_str().to_string())
            .or_default()
            .refunded_total += refund_amount;
        rep.credit_notes.push(CreditNoteInfo {
            id: cn_id,
            invoice: inv_id,
            currency: cur.as_str().to_string(),
            total,
            kind,
            refund_amount,
            credit_amount,
            out_of_band_amount: out_of_band,
            refund,
            voided: void,
        });
    }
    Ok(())
}

async fn record_invoice(
    api: &mut Api,
    rep: &mut ScenarioReport,
    inv_id: &str,
) -> Result<(), SimError> {
    if inv_id.is_empty() {
        return Ok(());
    }
    let inv = api
        .get(
            &format!("/v1/invoices/{inv_id}"),
            json!({"expand": ["payments"]}),
        )
        .await?;
    let cur = inv["currency"].as_str().unwrap_or("usd").to_string();
    let t = rep.totals.entry(cur).or_default();
    match inv["status"].as_str() {
        Some("paid") => {
            t.paid_invoices += 1;
            t.paid_invoice_total += inv["total"].as_i64().unwrap_or(0);
            t.paid_invoice_tax += inv["total_taxes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|x| x["tax_behavior"] == "exclusive")
                        .filter_map(|x| x["amount"].as_i64())
                        .sum::<i64>()
                })
                .unwrap_or(0);
            t.paid_invoice_discount += inv["total_discount_amounts"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x["amount"].as_i64()).sum::<i64>())
                .unwrap_or(0);
            rep.paid_invoices.push(inv_id.to_string());
        }
        Some("open") => {
            t.open_invoices += 1;
            t.failed_payments += 1;
            rep.open_invoices.push(inv_id.to_string());
            let pi = inv["payments"]["data"][0]["payment"]["payment_intent"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !pi.is_empty() {
                let p = api
                    .get(&format!("/v1/payment_intents/{pi}"), json!({}))
                    .await?;
                if let Some(ch) = p["latest_charge"].as_str() {
                    rep.failed_charges.push(ch.to_string());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_amounts_respect_currency_steps() {
        assert_eq!(local_amount(2_900, Currency::USD), 2_900);
        assert_eq!(local_amount(2_900, Currency::JPY), 4_350);
        assert_eq!(local_amount(2_900, Currency::KWD) % 10, 0);
        assert_eq!(local_amount(2_900, Currency::EUR), 2_700);
    }
}
