//! The simulator's in-memory state: every object as JSON in its internal (newest) shape, plus
//! the bookkeeping Stripe keeps (idempotency records, invoice numbering, events).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// An API version such as `2026-07-29.dahlia` or `2020-08-27`; shapes change at majors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion {
    full: String,
}

impl ApiVersion {
    /// The version the simulator uses when nothing else is set (pinned by stripe-go v2349).
    pub const DEFAULT: &'static str = "2026-07-29.dahlia";

    /// Parses `YYYY-MM-DD` with an optional `.name` release-train suffix.
    pub fn parse(s: &str) -> Option<Self> {
        let date = s.split('.').next().unwrap_or("");
        let b = date.as_bytes();
        let ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
        let suffix_ok = s[date.len()..]
            .strip_prefix('.')
            .map(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase()))
            .unwrap_or(s.len() == date.len());
        (ok && suffix_ok && date >= "2011-01-01").then(|| ApiVersion {
            full: s.to_string(),
        })
    }

    /// The version string as given.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    fn date(&self) -> &str {
        &self.full[..10]
    }

    /// True from 2025-03-31.basil on (invoice.payments, line.pricing, no invoice.charge).
    pub fn is_basil_or_later(&self) -> bool {
        self.date() >= "2025-03-31"
    }

    /// True from 2025-09-30.clover on (discount.source.coupon instead of discount.coupon).
    pub fn is_clover_or_later(&self) -> bool {
        self.date() >= "2025-09-30"
    }

    /// True for versions dated before `date` (`YYYY-MM-DD`), for the smaller breaking changes
    /// between majors (2019-12-03: post-payment credit notes need an explicit
    /// `out_of_band_amount`).
    pub fn is_before(&self, date: &str) -> bool {
        self.date() < date
    }
}

impl Default for ApiVersion {
    fn default() -> Self {
        ApiVersion {
            full: Self::DEFAULT.to_string(),
        }
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub kind: &'static str,
    pub seq: u64,
    pub v: Value,
    pub deleted: bool,
}

/// A remembered response for an `Idempotency-Key`.
#[derive(Debug, Clone)]
pub(crate) struct IdemRecord {
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

/// All mutable API state; guarded by one mutex, never held across an await.
pub(crate) struct Db {
    seq: u64,
    pub objects: HashMap<String, Stored>,
    pub idem: HashMap<String, IdemRecord>,
    id_rng: StdRng,
    /// Secret keys and webhook signing secrets come from their own generator, random per start
    /// unless fixed, so a simulator left running never shares its secrets with another.
    secret_rng: StdRng,
    /// How this simulator deviates from Stripe's current dialect (older API shapes, refusals).
    pub dialect: crate::config::Dialect,
    /// Events created since the last drain, handed to the delivery worker after unlocking.
    pub new_events: Vec<String>,
    pub account_id: String,
    pub clock_offset: i64,
}

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

impl Db {
    /// `secret_seed`: `Some` fixes keys and webhook secrets (tests); `None` draws them from the OS.
    pub fn new(seed: u64, secret_seed: Option<u64>, dialect: crate::config::Dialect) -> Self {
        let mut id_rng = StdRng::seed_from_u64(seed);
        let secret_rng = match secret_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let account_id = format!("acct_{}", rand_str(&mut id_rng, 16));
        Db {
            seq: 0,
            objects: HashMap::new(),
            idem: HashMap::new(),
            id_rng,
            secret_rng,
            dialect,
            new_events: Vec::new(),
            account_id,
            clock_offset: 0,
        }
    }

    /// Unix seconds as the simulated account sees them.
    pub fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real + self.clock_offset
    }

    /// A Stripe-looking id: `cus_`/`prod_` carry 14 characters, others 24.
    pub fn new_id(&mut self, prefix: &str) -> String {
        let len = match prefix {
            "cus" | "prod" | "si" | "we" => 14,
            "whsec" => 32,
            "inpay" | "cs_test" => 24,
            _ => 24,
        };
        format!("{prefix}_{}", rand_str(&mut self.id_rng, len))
    }

    /// Runs `f`, then rewinds the id sequence: ids drawn inside (a preview's) are not used up,
    /// so reads never shift the ids later objects get.
    pub fn rewinding_ids<T>(&mut self, f: impl FnOnce(&mut Db) -> T) -> T {
        let saved = self.id_rng.clone();
        let out = f(self);
        self.id_rng = saved;
        out
    }

    /// A secret (`sk_test_…`, `whsec_…`): from the secret generator, never the id sequence.
    pub fn new_secret(&mut self, prefix: &str) -> String {
        let len = if prefix == "whsec" { 32 } else { 24 };
        format!("{prefix}_{}", rand_str(&mut self.secret_rng, len))
    }

    /// Random upper-case hex-ish prefix for invoice numbers (`7FE1103`).
    pub fn invoice_prefix(&mut self) -> String {
        const HEX: &[u8] = b"0123456789ABCDEF";
        (0..8)
            .map(|_| HEX[self.id_rng.random_range(0..HEX.len())] as char)
            .collect()
    }

    pub fn insert(&mut self, kind: &'static str, id: &str, v: Value) {
        self.seq += 1;
        self.objects.insert(
            id.to_string(),
            Stored {
                kind,
                seq: self.seq,
                v,
                deleted: false,
            },
        );
    }

    pub fn get(&self, id: &str) -> Option<&Stored> {
        self.objects.get(id)
    }

    pub fn get_kind(&self, kind: &str, id: &str) -> Option<&Value> {
        self.objects
            .get(id)
            .filter(|s| s.kind == kind && !s.deleted)
            .map(|s| &s.v)
    }

    pub fn get_kind_mut(&mut self, kind: &str, id: &str) -> Option<&mut Value> {
        self.objects
            .get_mut(id)
            .filter(|s| s.kind == kind && !s.deleted)
            .map(|s| &mut s.v)
    }

    /// Ids of live objects of a kind, newest first.
    pub fn ids_of(&self, kind: &str) -> Vec<String> {
        let mut v: Vec<(&String, u64)> = self
            .objects
            .iter()
            .filter(|(_, s)| s.kind == kind && !s.deleted)
            .map(|(id, s)| (id, s.seq))
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.1));
        v.into_iter().map(|(id, _)| id.clone()).collect()
    }
}

fn rand_str(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
        .collect()
}

/// Noun used in "No such <noun>: 'id'" messages.
pub(crate) fn noun(kind: &str) -> &'static str {
    match kind {
        "customer" => "customer",
        "product" => "product",
        "price" => "price",
        "payment_intent" => "payment_intent",
        "charge" => "charge",
        "balance_transaction" => "balance transaction",
        "refund" => "refund",
        "dispute" => "dispute",
        "payout" => "payout",
        "bank_account" => "external account",
        "invoice" => "invoice",
        "invoiceitem" => "invoiceitem",
        "subscription" => "subscription",
        "tax_rate" => "tax_rate",
        "coupon" => "coupon",
        "checkout.session" => "checkout.session",
        "event" => "event",
        "webhook_endpoint" => "webhook_endpoint",
        "invoice_payment" => "invoice_payment",
        "payment_method" => "PaymentMethod",
        "discount" => "discount",
        "credit_note" => "credit note",
        "customer_balance_transaction" => "customer balance transaction",
        _ => "object",
    }
}
