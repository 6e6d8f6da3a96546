//! The Stripe API client: reads for what posting needs, retrieve with the right `expand[]`s so
//! one event costs one request where Stripe allows it, page events, check credentials.
//!
//! Every request carries `Authorization: Bearer <key>` and a pinned `Stripe-Version`, waits for
//! the client-side rate limiter, and is retried on 429, 409, 5xx and network errors with
//! exponential backoff and jitter, honouring `Retry-After` and `Stripe-Should-Retry`.

mod dialect;
mod endpoints;
mod error;
mod query;
mod write;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use percent_encoding::utf8_percent_encode;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

pub use endpoints::{CreatedWebhookEndpoint, WebhookEndpoint};
pub use error::{InvalidRequest, StripeError};
pub use query::Query;
pub use write::{CustomerParams, ProductParams, idempotency_key};

use crate::models::{
    Account, BalanceTransaction, Charge, CheckoutLineItem, CheckoutSession, CreditNote,
    CreditNoteLineItem, Customer, Dispute, Event, Expandable, Invoice, InvoiceLineItem,
    InvoicePayment, List, ModelError, PaymentIntent, Payout, Price, Product, Refund, StripeModel,
};
use error::{ErrorBody, scrub};
use query::SEGMENT;

/// Stripe's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
/// The API version requests are pinned to (stripe-go/stripe-node pin as of 2026-08).
pub const DEFAULT_API_VERSION: &str = "2026-07-29.dahlia";
/// The first API version with the basil shapes (`invoice.payments`, `line.pricing`).
pub const BASIL: &str = "2025-03-31";
/// Default client-side limit for test-mode keys (Stripe allows 25/s in sandboxes).
pub const DEFAULT_TEST_RATE_PER_SEC: u32 = 20;
/// Default client-side limit for live-mode keys (Stripe allows 100/s).
pub const DEFAULT_LIVE_RATE_PER_SEC: u32 = 80;
/// Stripe's maximum page size.
pub const MAX_PAGE_SIZE: u8 = 100;
/// Stripe accepts at most this many `types[]` on `GET /v1/events`.
pub const MAX_EVENT_TYPES: usize = 20;

/// Whether a key acts on test or live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Test,
    Live,
}

/// How to reach Stripe. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct StripeClientConfig {
    /// `https://api.stripe.com`, or a simulator's address in tests.
    pub base_url: Url,
    /// A secret (`sk_test_`/`sk_live_`) or restricted (`rk_test_`/`rk_live_`) key.
    pub api_key: SecretString,
    /// Sent as `Stripe-Version` on every request.
    pub api_version: String,
    /// Retries after the first attempt (so at most `max_retries + 1` requests per call).
    pub max_retries: u32,
    /// Client-side limit; `None` picks 20/s for test keys and 80/s for live keys.
    pub rate_limit_per_sec: Option<NonZeroU32>,
    /// Per-request timeout (connect + response).
    pub timeout: Duration,
    /// First backoff delay; doubles per retry, with jitter.
    pub retry_base_delay: Duration,
    /// Longest backoff delay between two attempts.
    pub retry_max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails (transient) and the
    /// job queue retries later.
    pub max_retry_after: Duration,
}

impl StripeClientConfig {
    /// Defaults for Stripe itself with this key.
    pub fn new(api_key: SecretString) -> Self {
        StripeClientConfig {
            // A constant that always parses; the fallback is never used.
            base_url: Url::parse(DEFAULT_BASE_URL).unwrap_or_else(|_| unreachable!()),
            api_key,
            api_version: DEFAULT_API_VERSION.to_string(),
            max_retries: 3,
            rate_limit_per_sec: None,
            timeout: Duration::from_secs(30),
            retry_base_delay: Duration::from_millis(500),
            retry_max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Parameters of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListEventsParams {
    /// At most [`MAX_EVENT_TYPES`]; empty means all types.
    pub types: Vec<String>,
    pub created_gt: Option<i64>,
    pub created_gte: Option<i64>,
    pub created_lt: Option<i64>,
    pub created_lte: Option<i64>,
    /// Only events not yet delivered successfully to some endpoint (`Some(false)`).
    pub delivery_success: Option<bool>,
    /// Cursor: the last event ID of the previous page (pages go from newest to oldest).
    pub starting_after: Option<String>,
    /// 1–100; `None` uses 100.
    pub limit: Option<u8>,
}

/// Pages `GET /v1/events` newest-first; see [`StripeClient::events_pager`].
#[derive(Debug)]
pub struct EventPager {
    client: StripeClient,
    params: ListEventsParams,
    done: bool,
}

impl EventPager {
    /// The next page, or `None` when there are no more events.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Event>>, StripeError> {
        if self.done {
            return Ok(None);
        }
        let page = self.client.list_events(&self.params).await?;
        match page.data.last() {
            Some(last) if page.has_more => self.params.starting_after = Some(last.id.clone()),
            _ => self.done = true,
        }
        if page.data.is_empty() {
            return Ok(None);
        }
        Ok(Some(page.data))
    }
}

/// The Stripe API client. Cheap to clone; clones share the rate limiter and request counter.
#[derive(Clone)]
pub struct StripeClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: StripeClientConfig,
    limiter: DefaultDirectRateLimiter,
    requests: AtomicU64,
    /// The highest `requests` reported by [`StripeClient::requests_unreported`].
    reported: AtomicU64,
    mode: KeyMode,
    /// Expands and endpoints this account's API refused, so they are not asked for again.
    dialect: dialect::DialectMemory,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("base_url", &self.inner.config.base_url.as_str())
            .field("api_version", &self.inner.config.api_version)
            .field("mode", &self.inner.mode)
            .finish_non_exhaustive()
    }
}

/// Test or live mode from a key's prefix; `None` when it is not a secret or restricted key.
pub fn key_mode(key: &str) -> Option<KeyMode> {
    if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        Some(KeyMode::Test)
    } else if key.starts_with("sk_live_") || key.starts_with("rk_live_") {
        Some(KeyMode::Live)
    } else {
        None
    }
}

/// True for API versions with the basil (2025-03-31) shapes or later.
pub fn is_basil_or_later(api_version: &str) -> bool {
    // Versions are `YYYY-MM-DD[.name]`, so the date compares as text.
    api_version.get(..10).is_some_and(|date| date >= BASIL)
}

impl StripeClient {
    /// Builds a client; refuses keys that are not `sk_`/`rk_` test or live keys (a publishable
    /// `pk_` key cannot read these objects).
    pub fn new(config: StripeClientConfig) -> Result<Self, StripeError> {
        let mode = key_mode(config.api_key.expose_secret()).ok_or_else(|| {
            StripeError::Config(
                "the Stripe API key must be a secret or restricted key (starting sk_test_, \
                 sk_live_, rk_test_ or rk_live_)"
                    .to_string(),
            )
        })?;
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(StripeError::Config(format!(
                "the Stripe base URL must be http(s), not `{}`",
                config.base_url.scheme()
            )));
        }
        let rate = config.rate_limit_per_sec.unwrap_or(match mode {
            KeyMode::Test => NonZeroU32::new(DEFAULT_TEST_RATE_PER_SEC).unwrap_or(NonZeroU32::MIN),
            KeyMode::Live => NonZeroU32::new(DEFAULT_LIVE_RATE_PER_SEC).unwrap_or(NonZeroU32::MIN),
        });
        // A burst of one spaces requests evenly, so no one-second window ever holds more than
        // `rate` of them (a full-size burst could put nearly twice that in one window).
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("ml-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(StripeClient {
            inner: Arc::new(Inner {
                http,
                config,
                limiter,
                requests: AtomicU64::new(0),
                reported: AtomicU64::new(0),
                mode,
                dialect: dialect::DialectMemory::default(),
            }),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Requests sent since the last call (across clones), for a process-wide counter that
    /// several connections' clients add to. `fetch_max`, so concurrent callers never count a
    /// request twice.
    pub fn requests_unreported(&self) -> u64 {
        let now = self.requests_made();
        let before = self.inner.reported.fetch_max(now, Ordering::Relaxed);
        now.saturating_sub(before)
    }

    /// Test or live, from the key.
    pub fn mode(&self) -> KeyMode {
        self.inner.mode
    }

    /// The pinned API version.
    pub fn api_version(&self) -> &str {
        &self.inner.config.api_version
    }

    /// `GET /v1/account`: checks the key and names the account it belongs to.
    pub async fn retrieve_account(&self) -> Result<Account, StripeError> {
        self.get_model("/v1/account", &Query::new()).await
    }

    /// `GET /v1/charges/{id}` with the balance transaction (fee, net, FX) and customer expanded.
    /// Where the API refuses the balance transaction's expand, it is fetched on its own.
    pub async fn retrieve_charge(&self, id: &str) -> Result<Charge, StripeError> {
        let path = object_path("/v1/charges", id)?;
        let (mut charge, granted): (Charge, _) = self
            .get_model_expanded(
                &path,
                "charge",
                &Query::new(),
                &["balance_transaction", "customer"],
            )
            .await?;
        if !granted.iter().any(|g| g == "balance_transaction")
            && let Some(Expandable::Id(txn)) = &charge.balance_transaction
        {
            let txn = self.retrieve_balance_transaction(txn).await?;
            charge.raw["balance_transaction"] = txn.raw.clone();
            charge.balance_transaction = Some(Expandable::Object(Box::new(txn)));
        }
        Ok(charge)
    }

    /// `GET /v1/refunds/{id}`: a refund as Stripe has it now (its status, amount, charge).
    pub async fn retrieve_refund(&self, id: &str) -> Result<Refund, StripeError> {
        let path = object_path("/v1/refunds", id)?;
        self.get_model(&path, &Query::new()).await
    }

    /// `GET /v1/payouts/{id}`: a payout as Stripe has it now (status, reconciliation status).
    pub async fn retrieve_payout(&self, id: &str) -> Result<Payout, StripeError> {
        let path = object_path("/v1/payouts", id)?;
        self.get_model(&path, &Query::new()).await
    }

    /// `GET /v1/balance_transactions?payout=po_…`: one page (up to 100) of what a payout
    /// carried, and its own `payout` transaction.
    pub async fn list_balance_transactions_for_payout(
        &self,
        payout: &str,
        starting_after: Option<&str>,
    ) -> Result<List<BalanceTransaction>, StripeError> {
        object_path("/v1/payouts", payout)?;
        let mut q = Query::new();
        q.push("payout", payout)
            .push("limit", MAX_PAGE_SIZE.to_string());
        if let Some(after) = starting_after {
            q.push("starting_after", after);
        }
        self.get_list("/v1/balance_transactions", &q).await
    }

    /// `GET /v1/credit_notes/{id}` with all its lines (the rest paged from
    /// `/v1/credit_notes/{id}/lines` when Stripe cut the list short).
    pub async fn retrieve_credit_note(&self, id: &str) -> Result<CreditNote, StripeError> {
        let path = object_path("/v1/credit_notes", id)?;
        let mut note: CreditNote = self.get_model(&path, &Query::new()).await?;
        if let Some(lines) = note.lines.as_mut() {
            let lines_path = format!("{path}/lines");
            while lines.has_more {
                let mut q = Query::new();
                q.push("limit", MAX_PAGE_SIZE.to_string());
                if let Some(last) = lines.data.last() {
                    q.push("starting_after", last.id.clone());
                }
                let page: List<CreditNoteLineItem> = self.get_list(&lines_path, &q).await?;
                let more = page.has_more && !page.data.is_empty();
                lines.data.extend(page.data);
                lines.has_more = more;
            }
        }
        Ok(note)
    }

    /// `GET /v1/credit_notes?created[gte]=…&created[lt]=…`: one page (up to 100, newest first)
    /// of the credit notes made in `[since, until)` (Unix seconds).
    pub async fn list_credit_notes_between(
        &self,
        since: i64,
        until: i64,
        starting_after: Option<&str>,
    ) -> Result<List<CreditNote>, StripeError> {
        self.list_created_between("/v1/credit_notes", since, Some(until), starting_after)
            .await
    }

    /// `GET /v1/credit_notes?invoice=…`: an invoice's credit notes (up to 100).
    pub async fn list_credit_notes_for_invoice(
        &self,
        invoice: &str,
    ) -> Result<Vec<CreditNote>, StripeError> {
        object_path("/v1/invoices", invoice)?;
        let mut q = Query::new();
        q.push("invoice", invoice)
            .push("limit", MAX_PAGE_SIZE.to_string());
        Ok(self
            .get_list::<CreditNote>("/v1/credit_notes", &q)
            .await?
            .data)
    }

    /// `GET /v1/disputes/{id}`: a dispute as Stripe has it now, with its balance transactions
    /// (Stripe embeds them whole).
    pub async fn retrieve_dispute(&self, id: &str) -> Result<Dispute, StripeError> {
        let path = object_path("/v1/disputes", id)?;
        self.get_model(&path, &Query::new()).await
    }

    /// `GET /v1/refunds?charge=…`: every refund of a charge (paged, 100 at a time).
    pub async fn list_refunds_for_charge(&self, charge: &str) -> Result<Vec<Refund>, StripeError> {
        object_path("/v1/charges", charge)?;
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut q = Query::new();
            q.push("charge", charge)
                .push("limit", MAX_PAGE_SIZE.to_string());
            if let Some(a) = &after {
                q.push("starting_after", a.as_str());
            }
            let page = self.get_list::<Refund>("/v1/refunds", &q).await?;
            after = page.data.last().map(|r| r.id.clone());
            all.extend(page.data);
            if !page.has_more || after.is_none() {
                return Ok(all);
            }
        }
    }

    /// `GET /v1/invoices/{id}` with customer and discounts expanded (and, on basil+ versions, the
    /// InvoicePayments); lines beyond the embedded page are fetched from
    /// `GET /v1/invoices/{id}/lines`, so the result always has every line (`lines.has_more` false,
    /// `raw` updated to match). An expand the API refuses is left out: the payments then come
    /// from `GET /v1/invoice_payments?invoice=…` (where that exists); the customer and discounts
    /// are not needed expanded (their IDs and `total_discount_amounts` carry what posting uses).
    pub async fn retrieve_invoice(&self, id: &str) -> Result<Invoice, StripeError> {
        let path = object_path("/v1/invoices", id)?;
        let basil = is_basil_or_later(self.api_version());
        let wanted: &[&str] = if basil {
            &["payments", "customer", "discounts"]
        } else {
            &["customer", "discounts"]
        };
        let (mut invoice, granted): (Invoice, _) = self
            .get_model_expanded(&path, "invoice", &Query::new(), wanted)
            .await?;
        if basil
            && invoice.payments.is_none()
            && !granted.iter().any(|g| g == "payments")
            && let Some(payments) = self.list_invoice_payments_for_invoice(id).await?
        {
            invoice.raw["payments"] = list_json(
                &format!("/v1/invoice_payments?invoice={id}"),
                payments.iter().map(|p| p.raw.clone()),
            );
            invoice.payments = Some(List {
                data: payments,
                has_more: false,
                url: Some("/v1/invoice_payments".into()),
            });
        }
        if invoice.lines.has_more {
            let lines_path = format!("{path}/lines");
            while invoice.lines.has_more {
                let mut q = Query::new();
                q.push("limit", MAX_PAGE_SIZE.to_string());
                if let Some(last) = invoice.lines.data.last() {
                    q.push("starting_after", last.id.clone());
                }
                let page: List<InvoiceLineItem> = self.get_list(&lines_path, &q).await?;
                if page.data.is_empty() {
                    // Stripe said there is more but gave nothing: stop rather than loop.
                    break;
                }
                invoice.lines.has_more = page.has_more;
                invoice.lines.data.extend(page.data);
            }
            invoice.lines.has_more = false;
            let all: Vec<serde_json::Value> =
                invoice.lines.data.iter().map(|l| l.raw.clone()).collect();
            if let Some(lines) = invoice.raw.get_mut("lines") {
                lines["data"] = serde_json::Value::Array(all);
                lines["has_more"] = serde_json::Value::Bool(false);
            }
        }
        Ok(invoice)
    }

    /// `GET /v1/payment_intents/{id}` with the latest charge and its balance transaction (the
    /// charge fetched on its own where the API refuses that expand).
    pub async fn retrieve_payment_intent(&self, id: &str) -> Result<PaymentIntent, StripeError> {
        let path = object_path("/v1/payment_intents", id)?;
        let (mut intent, granted): (PaymentIntent, _) = self
            .get_model_expanded(
                &path,
                "payment_intent",
                &Query::new(),
                &["latest_charge.balance_transaction"],
            )
            .await?;
        if granted.is_empty()
            && let Some(Expandable::Id(charge)) = &intent.latest_charge
        {
            let charge = self.retrieve_charge(charge).await?;
            intent.raw["latest_charge"] = charge.raw.clone();
            intent.latest_charge = Some(Expandable::Object(Box::new(charge)));
        }
        Ok(intent)
    }

    /// `GET /v1/customers/{id}` (a deleted customer comes back with `deleted: true`).
    pub async fn retrieve_customer(&self, id: &str) -> Result<Customer, StripeError> {
        self.get_model(&object_path("/v1/customers", id)?, &Query::new())
            .await
    }

    /// `GET /v1/products/{id}`.
    pub async fn retrieve_product(&self, id: &str) -> Result<Product, StripeError> {
        self.get_model(&object_path("/v1/products", id)?, &Query::new())
            .await
    }

    /// `GET /v1/prices/{id}`.
    pub async fn retrieve_price(&self, id: &str) -> Result<Price, StripeError> {
        self.get_model(&object_path("/v1/prices", id)?, &Query::new())
            .await
    }

    /// `GET /v1/balance_transactions/{id}`.
    pub async fn retrieve_balance_transaction(
        &self,
        id: &str,
    ) -> Result<BalanceTransaction, StripeError> {
        self.get_model(&object_path("/v1/balance_transactions", id)?, &Query::new())
            .await
    }

    /// `GET /v1/checkout/sessions?payment_intent=pi_...` with each session's line items (from
    /// `/v1/checkout/sessions/{id}/line_items` where the expand is refused). Empty where the API
    /// has no Checkout Sessions: the charge's own fields then say what was sold.
    pub async fn list_checkout_sessions_for_payment_intent(
        &self,
        payment_intent: &str,
    ) -> Result<Vec<CheckoutSession>, StripeError> {
        const PATH: &str = "/v1/checkout/sessions";
        if self.inner.dialect.endpoint_missing(PATH) {
            return Ok(Vec::new());
        }
        let mut q = Query::new();
        q.push("payment_intent", payment_intent);
        let listed = self
            .get_list_expanded::<CheckoutSession>(
                PATH,
                "checkout session list",
                &q,
                &["data.line_items"],
            )
            .await;
        let (mut list, granted) = match listed {
            Err(e) if dialect::is_missing_endpoint(&e) => {
                self.inner.dialect.mark_missing(PATH);
                return Ok(Vec::new());
            }
            other => other?,
        };
        if granted.is_empty() {
            for session in list.data.iter_mut().filter(|s| s.line_items.is_none()) {
                let path = format!("{}/line_items", object_path(PATH, &session.id)?);
                let mut q = Query::new();
                q.push("limit", MAX_PAGE_SIZE.to_string());
                let items: List<CheckoutLineItem> = self.get_list(&path, &q).await?;
                session.line_items = Some(items);
            }
        }
        Ok(list.data)
    }

    /// `GET /v1/invoice_payments?payment[type]=payment_intent&payment[payment_intent]=pi_...`:
    /// the basil+ way from a payment back to its invoice(s). `None` where the API has no
    /// InvoicePayments (older versions and some emulators): the caller must look elsewhere.
    pub async fn list_invoice_payments_for_payment_intent(
        &self,
        payment_intent: &str,
    ) -> Result<Option<Vec<InvoicePayment>>, StripeError> {
        let mut q = Query::new();
        q.push("payment[type]", "payment_intent")
            .push("payment[payment_intent]", payment_intent)
            .push("limit", MAX_PAGE_SIZE.to_string());
        self.list_invoice_payments(&q).await
    }

    /// `GET /v1/invoice_payments?invoice=in_...`: an invoice's payments without `expand[]`.
    /// `None` where the API has no InvoicePayments.
    pub async fn list_invoice_payments_for_invoice(
        &self,
        invoice: &str,
    ) -> Result<Option<Vec<InvoicePayment>>, StripeError> {
        object_path("/v1/invoices", invoice)?;
        let mut q = Query::new();
        q.push("invoice", invoice)
            .push("limit", MAX_PAGE_SIZE.to_string());
        self.list_invoice_payments(&q).await
    }

    async fn list_invoice_payments(
        &self,
        q: &Query,
    ) -> Result<Option<Vec<InvoicePayment>>, StripeError> {
        const PATH: &str = "/v1/invoice_payments";
        if self.inner.dialect.endpoint_missing(PATH) {
            return Ok(None);
        }
        match self.get_list::<InvoicePayment>(PATH, q).await {
            Ok(list) => Ok(Some(list.data)),
            Err(e) if dialect::is_missing_endpoint(&e) => {
                self.inner.dialect.mark_missing(PATH);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/invoices?customer=cus_...&created[lte]=…`: a customer's most recent invoices
    /// (up to 100, newest first), with their payments on basil+ where the API allows the expand,
    /// so a payment can be traced to the invoice it paid from the invoice's side.
    pub async fn list_invoices_for_customer(
        &self,
        customer: &str,
        created_lte: i64,
    ) -> Result<Vec<Invoice>, StripeError> {
        object_path("/v1/customers", customer)?;
        let mut q = Query::new();
        q.push("customer", customer)
            .push("created[lte]", created_lte.to_string())
            .push("limit", MAX_PAGE_SIZE.to_string());
        let wanted: &[&str] = if is_basil_or_later(self.api_version()) {
            &["data.payments"]
        } else {
            &[]
        };
        let (list, _) = self
            .get_list_expanded::<Invoice>("/v1/invoices", "invoice list", &q, wanted)
            .await?;
        Ok(list.data)
    }

    /// `GET /v1/invoices?created[gte]=…`: one page (up to 100, newest first) of the invoices
    /// made since `since` (Unix seconds), after `starting_after` (the last ID of the previous
    /// page). Their lines may be cut short (`lines.has_more`): [`Self::retrieve_invoice`] reads
    /// one whole.
    pub async fn list_invoices_created_since(
        &self,
        since: i64,
        starting_after: Option<&str>,
    ) -> Result<List<Invoice>, StripeError> {
        self.list_created_since("/v1/invoices", since, starting_after)
            .await
    }

    /// `GET /v1/charges?created[gte]=…`: one page (up to 100, newest first) of the charges made
    /// since `since` (Unix seconds), after `starting_after`.
    pub async fn list_charges_created_since(
        &self,
        since: i64,
        starting_after: Option<&str>,
    ) -> Result<List<Charge>, StripeError> {
        self.list_created_since("/v1/charges", since, starting_after)
            .await
    }

    /// `GET /v1/balance_transactions?created[gte]=…&created[lt]=…`: one page (up to 100, newest
    /// first) of what moved the balance in `[since, until)` (Unix seconds): charges, refunds,
    /// dispute adjustments, payouts, fees.
    pub async fn list_balance_transactions_between(
        &self,
        since: i64,
        until: i64,
        starting_after: Option<&str>,
    ) -> Result<List<BalanceTransaction>, StripeError> {
        self.list_created_between(
            "/v1/balance_transactions",
            since,
            Some(until),
            starting_after,
        )
        .await
    }

    async fn list_created_since<T>(
        &self,
        path: &str,
        since: i64,
        starting_after: Option<&str>,
    ) -> Result<List<T>, StripeError>
    where
        List<T>: DeserializeOwned,
    {
        self.list_created_between(path, since, None, starting_after)
            .await
    }

    async fn list_created_between<T>(
        &self,
        path: &str,
        since: i64,
        until: Option<i64>,
        starting_after: Option<&str>,
    ) -> Result<List<T>, StripeError>
    where
        List<T>: DeserializeOwned,
    {
        let mut q = Query::new();
        q.push("created[gte]", since.to_string());
        if let Some(until) = until {
            q.push("created[lt]", until.to_string());
        }
        q.push("limit", MAX_PAGE_SIZE.to_string());
        if let Some(after) = starting_after {
            q.push("starting_after", after);
        }
        self.get_list::<T>(path, &q).await
    }

    /// `GET path?limit=1`, the answer dropped: whether this key may list `path` (a restricted
    /// key without the permission gets [`StripeError::Permission`]).
    pub async fn probe_list(&self, path: &str) -> Result<(), StripeError> {
        let mut q = Query::new();
        q.push("limit", "1");
        self.get_text(path, &q).await.map(|_| ())
    }

    /// The expand refusals and missing endpoints this client has met (for `ping` and tests).
    pub fn dialect_refusals(&self) -> (Vec<String>, Vec<String>) {
        self.inner.dialect.snapshot()
    }

    /// `GET path` with as many of `expands` as this account's API takes: a refused expand is
    /// dropped (and remembered for `resource`) and the request sent again. Returns the body and
    /// the expands it carries, so the caller can fetch the rest separately.
    async fn get_text_expanded(
        &self,
        path: &str,
        resource: &str,
        base: &Query,
        expands: &[&str],
    ) -> Result<(String, Vec<String>), StripeError> {
        let mut asked: Vec<&str> = expands
            .iter()
            .copied()
            .filter(|e| !self.inner.dialect.expand_refused(resource, e))
            .collect();
        // Each round drops at least one expand, so this ends.
        loop {
            let mut q = base.clone();
            q.expand(&asked);
            match self.get_text(path, &q).await {
                Ok(body) => return Ok((body, asked.iter().map(|a| a.to_string()).collect())),
                Err(e) => {
                    let Some(refused) = dialect::refused_expands(&e, &asked) else {
                        return Err(e);
                    };
                    if let [one] = refused.as_slice() {
                        self.inner.dialect.refuse_expand(resource, one);
                    }
                    asked.retain(|a| !refused.iter().any(|r| r == a));
                }
            }
        }
    }

    async fn get_model_expanded<T: StripeModel>(
        &self,
        path: &str,
        resource: &str,
        base: &Query,
        expands: &[&str],
    ) -> Result<(T, Vec<String>), StripeError> {
        let (body, granted) = self
            .get_text_expanded(path, resource, base, expands)
            .await?;
        let model = T::from_json(&body).map_err(|source| StripeError::Decode {
            path: path.to_string(),
            source,
        })?;
        Ok((model, granted))
    }

    async fn get_list_expanded<T>(
        &self,
        path: &str,
        resource: &str,
        base: &Query,
        expands: &[&str],
    ) -> Result<(List<T>, Vec<String>), StripeError>
    where
        List<T>: DeserializeOwned,
    {
        let (body, granted) = self
            .get_text_expanded(path, resource, base, expands)
            .await?;
        let list = serde_json::from_str(&body).map_err(|source| StripeError::Decode {
            path: path.to_string(),
            source: ModelError::Malformed {
                what: "list",
                source,
            },
        })?;
        Ok((list, granted))
    }

    /// One page of `GET /v1/events` (newest first).
    pub async fn list_events(&self, params: &ListEventsParams) -> Result<List<Event>, StripeError> {
        if params.types.len() > MAX_EVENT_TYPES {
            return Err(StripeError::InvalidArgument(format!(
                "Stripe accepts at most {MAX_EVENT_TYPES} event types per request, got {}",
                params.types.len()
            )));
        }
        let limit = params.limit.unwrap_or(MAX_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(StripeError::InvalidArgument(format!(
                "the page size must be 1 to {MAX_PAGE_SIZE}, got {limit}"
            )));
        }
        let mut q = Query::new();
        for t in &params.types {
            q.push("types[]", t.clone());
        }
        for (op, value) in [
            ("gt", params.created_gt),
            ("gte", params.created_gte),
            ("lt", params.created_lt),
            ("lte", params.created_lte),
        ] {
            if let Some(v) = value {
                q.push(format!("created[{op}]"), v.to_string());
            }
        }
        if let Some(ok) = params.delivery_success {
            q.push("delivery_success", ok.to_string());
        }
        if let Some(cursor) = &params.starting_after {
            q.push("starting_after", cursor.clone());
        }
        q.push("limit", limit.to_string());
        self.get_list("/v1/events", &q).await
    }

    /// A pager over every event matching `params`, page by page, newest first.
    pub fn events_pager(&self, params: ListEventsParams) -> EventPager {
        EventPager {
            client: self.clone(),
            params,
            done: false,
        }
    }

    /// Every event matching `params`, newest first (follows `has_more` to the end).
    pub async fn list_all_events(
        &self,
        params: ListEventsParams,
    ) -> Result<Vec<Event>, StripeError> {
        let mut pager = self.events_pager(params);
        let mut all = Vec::new();
        while let Some(page) = pager.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// `GET` any path and parse the body as a model (exact numbers, `raw` kept).
    pub async fn get_model<T: StripeModel>(
        &self,
        path: &str,
        query: &Query,
    ) -> Result<T, StripeError> {
        let body = self.get_text(path, query).await?;
        T::from_json(&body).map_err(|source| StripeError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// `GET` any list path and parse the body as a list object.
    pub async fn get_list<T>(&self, path: &str, query: &Query) -> Result<List<T>, StripeError>
    where
        List<T>: DeserializeOwned,
    {
        let body = self.get_text(path, query).await?;
        serde_json::from_str(&body).map_err(|source| StripeError::Decode {
            path: path.to_string(),
            source: ModelError::Malformed {
                what: "list",
                source,
            },
        })
    }

    /// `GET` with auth, version, rate limiting and retries; returns the 2xx body.
    pub async fn get_text(&self, path: &str, query: &Query) -> Result<String, StripeError> {
        let config = &self.inner.config;
        let mut url = format!("{}{}", config.base_url.as_str().trim_end_matches('/'), path);
        if !query.pairs().is_empty() {
            url.push('?');
            url.push_str(&query.encode());
        }
        self.send_with_retries(path, "request", || self.inner.http.get(&url))
            .await
    }

    /// Sends what `build` makes (auth and version added here) under the rate limit, retrying
    /// what Stripe says is worth retrying (`Retry-After`, backoff), until the attempts run out.
    /// Reads and writes share it; a write's `build` adds its `Idempotency-Key`, so a retried
    /// write is the same write. Returns the 2xx body.
    pub(crate) async fn send_with_retries(
        &self,
        path: &str,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<String, StripeError> {
        let config = &self.inner.config;
        let max_attempts = config.max_retries.saturating_add(1);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.inner.limiter.until_ready().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            let sent = build()
                .bearer_auth(config.api_key.expose_secret())
                .header("Stripe-Version", &config.api_version)
                .send()
                .await;
            let failure = match sent {
                Err(e) => Failure::network(path, attempt, &e),
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.text().await {
                        Err(e) => Failure::network(path, attempt, &e),
                        Ok(body) if status.is_success() => return Ok(body),
                        Ok(body) => {
                            Failure::from_response(path, attempt, status.as_u16(), &headers, &body)
                        }
                    }
                }
            };
            if !failure.retry || attempt >= max_attempts {
                return Err(failure.error);
            }
            let delay = match failure.retry_after {
                Some(wait) if wait > config.max_retry_after => return Err(failure.error),
                Some(wait) => wait,
                None => backoff(config.retry_base_delay, config.retry_max_delay, attempt),
            };
            tracing::debug!(path, attempt, ?delay, error = %failure.error, "retrying Stripe {what}");
            tokio::time::sleep(delay).await;
        }
    }
}

/// A list object's JSON, for `raw` copies of what was fetched separately.
fn list_json(url: &str, data: impl Iterator<Item = serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"object": "list", "data": data.collect::<Vec<_>>(), "has_more": false, "url": url})
}

/// `/v1/things/{id}`. Stripe IDs are letters, digits and `_`; anything else (`..`, `/`, `?`)
/// is refused so an ID can never point the request elsewhere.
fn object_path(collection: &str, id: &str) -> Result<String, StripeError> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        return Err(StripeError::InvalidArgument(format!(
            "`{}` is not a Stripe object ID",
            id.escape_debug()
        )));
    }
    Ok(format!("{collection}/{}", utf8_percent_encode(id, SEGMENT)))
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so concurrent
/// clients spread out but never retry immediately.
fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let step = base
        .saturating_mul(2_u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    let half = step / 2;
    let jitter = rand::rng().random_range(0.0..=1.0);
    half + half.mul_f64(jitter)
}

/// One failed attempt: its error, and whether and when to try again.
struct Failure {
    error: StripeError,
    retry: bool,
    retry_after: Option<Duration>,
}

impl Failure {
    fn network(path: &str, attempts: u32, e: &reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "connection failed".to_string()
        } else {
            "request failed".to_string()
        };
        // reqwest's message names the URL (IDs, never the key, which travels in a header).
        let detail = std::error::Error::source(e)
            .map(|s| format!(" ({})", scrub(&s.to_string())))
            .unwrap_or_default();
        Failure {
            error: StripeError::Network {
                path: path.to_string(),
                attempts,
                message: format!("{what}{detail}"),
            },
            retry: true,
            retry_after: None,
        }
    }

    fn from_response(
        path: &str,
        attempts: u32,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let request_id = header("request-id").map(str::to_string);
        let should_retry = match header("stripe-should-retry") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let envelope = ErrorBody::parse(body);
        let message = envelope
            .message
            .as_deref()
            .map(scrub)
            .unwrap_or_else(|| format!("HTTP {status} without a Stripe error body"));
        let path = path.to_string();
        let rate_limited = status == 429
            || matches!(
                envelope.code.as_deref(),
                Some("rate_limit" | "lock_timeout")
            );
        let error = match status {
            _ if rate_limited => StripeError::RateLimited {
                path,
                attempts,
                request_id,
                retry_after,
            },
            401 => StripeError::Authentication { request_id },
            403 => StripeError::Permission {
                path,
                message,
                request_id,
            },
            // "a similar object exists in live mode, but a test mode key was used to make this
            // request": a person must fix the key, retrying cannot help.
            404 if message.contains("exists in live mode") => StripeError::WrongMode {
                path,
                expected: "live",
                message,
                request_id,
            },
            404 if message.contains("exists in test mode") => StripeError::WrongMode {
                path,
                expected: "test",
                message,
                request_id,
            },
            404 => StripeError::NotFound {
                path,
                code: envelope.code,
                message,
                request_id,
            },
            409 => StripeError::Conflict {
                path,
                attempts,
                message,
            },
            424 | 500..=599 => StripeError::Server {
                status,
                path,
                attempts,
                message,
                request_id,
            },
            _ => StripeError::InvalidRequest(Box::new(InvalidRequest {
                status,
                path,
                kind: envelope.kind,
                code: envelope.code,
                param: envelope.param,
                message,
                request_id,
            })),
        };
        // Stripe's own verdict wins over the status-based default, as in its SDKs.
        let retry = should_retry.unwrap_or(matches!(
            error,
            StripeError::RateLimited { .. }
                | StripeError::Conflict { .. }
                | StripeError::Server { .. }
        ));
        Failure {
            error,
            retry,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..50 {
            let first = backoff(base, max, 1);
            assert!(first >= Duration::from_millis(50) && first <= base);
            let third = backoff(base, max, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(base, max, 30);
            assert!(late >= max / 2 && late <= max);
        }
    }

    #[test]
    fn versions_and_keys_are_classified() {
        assert!(is_basil_or_later("2026-07-29.dahlia"));
        assert!(is_basil_or_later("2025-03-31.basil"));
        assert!(!is_basil_or_later("2024-09-30.acacia"));
        assert!(!is_basil_or_later("2020-03-02"));
        assert_eq!(key_mode("sk_test_x"), Some(KeyMode::Test));
        assert_eq!(key_mode("rk_live_x"), Some(KeyMode::Live));
        assert_eq!(key_mode("pk_test_x"), None);
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(
            object_path("/v1/charges", "ch_1").unwrap(),
            "/v1/charges/ch_1"
        );
        for bad in ["..", "ch_1/../../account", "ch_1?expand[]=x", "", "ch 1"] {
            let err = object_path("/v1/charges", bad).unwrap_err();
            assert!(matches!(err, StripeError::InvalidArgument(_)), "{bad}");
        }
    }
}
