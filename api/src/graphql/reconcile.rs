//! The reconciliation over GraphQL: `reconciliationStart` runs one for a period as a job of the
//! connection (it reads Stripe and NetSuite, which takes a while for a busy month), and
//! `Connection.reconciliation` follows it and shows its report. `ml-connector reconcile` prints
//! the same report.

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use mlc_service::pipeline::{ReconciliationReport, Term};
use mlc_store::ApiKeyRole;

use super::errors::{internal, store};
use super::mappings::MoneyAmount;
use super::mutation::{UserError, UserErrorCode, require, user_error, wake};
use super::onboarding::{RunState, max_attempts, money, owned};

/// The longest period one reconciliation covers.
const MAX_DAYS: i64 = 366;

/// The zone a connection's days are cut in: its `posting.time_zone` (the configured default
/// connection: `admin.time_zone`, which defaults to it), as `Connection.timeZone` shows.
pub fn connection_zone(
    ctx: &Context<'_>,
    connection: &mlc_store::Connection,
) -> jiff::tz::TimeZone {
    match ctx.data::<super::ProcessConfig>() {
        Ok(process) if mlc_service::connections::is_configured_default(connection) => {
            process.0.admin.time_zone.clone()
        }
        _ => mlc_service::config::connection_config(&connection.settings)
            .map(|c| c.posting.time_zone)
            .unwrap_or(jiff::tz::TimeZone::UTC),
    }
}

/// One term of a currency: Stripe's figure, NetSuite's, and NetSuite less Stripe.
#[derive(SimpleObject)]
pub struct ReconciliationTerm {
    pub stripe: MoneyAmount,
    pub netsuite: MoneyAmount,
    /// Zero when both agree.
    pub difference: MoneyAmount,
}

fn term(t: Term, currency: mlc_core::Currency) -> ReconciliationTerm {
    ReconciliationTerm {
        stripe: money(t.stripe_minor, currency),
        netsuite: money(t.netsuite_minor, currency),
        difference: money(t.difference(), currency),
    }
}

/// One currency: sales − fees − refunds − credit notes − disputes = net, on both sides.
#[derive(SimpleObject)]
pub struct ReconciliationCurrency {
    pub currency: String,
    /// What customers paid (captured), against the NetSuite invoices' sale lines.
    pub sales: ReconciliationTerm,
    /// Stripe's processing fees, against the fee lines (net mode) or fee journals (gross).
    pub fees: ReconciliationTerm,
    /// Refunds, against the credit memos.
    pub refunds: ReconciliationTerm,
    /// Credit notes (what they credit, refunded or left as customer credit), against their
    /// credit memos.
    pub credit_notes: ReconciliationTerm,
    /// What disputes withdrew less what was reinstated, against the dispute journal entries
    /// (their fees are in `fees`).
    pub disputes: ReconciliationTerm,
    /// Revenue net of fees, refunds, credit notes and disputes.
    pub net: ReconciliationTerm,
}

/// A Stripe object whose NetSuite record is missing or holds another amount.
#[derive(SimpleObject)]
pub struct ReconciliationDifference {
    /// `ch_…`, `re_…`, `cn_…`, `dp_…`, `po_…`, or the `in_…` paid by several charges.
    pub stripe_object_id: String,
    /// `sales`, `fees`, `refunds`, `credit_notes`, `disputes` or `payouts`.
    pub term: String,
    pub stripe: MoneyAmount,
    pub netsuite: MoneyAmount,
    /// The external ID the NetSuite record has, or would have.
    pub netsuite_external_id: String,
    /// What is wrong, and what to do.
    pub message: String,
}

/// Stripe balance transactions of a kind the connector does not post yet.
#[derive(SimpleObject)]
pub struct ReconciliationNotPosted {
    /// Stripe's balance transaction type (`adjustment`, `payout`, …).
    pub kind: String,
    pub count: i64,
    /// Sums in the settlement currency.
    pub amounts: Vec<MoneyAmount>,
}

/// A payout of the period against its NetSuite deposit.
#[derive(SimpleObject)]
pub struct ReconciliationPayout {
    /// `po_…`
    pub payout_id: String,
    pub stripe: MoneyAmount,
    pub netsuite: MoneyAmount,
    pub difference: MoneyAmount,
    /// `stripe_<po_…>`, when the deposit is in NetSuite.
    pub deposit_external_id: Option<String>,
}

/// A reconciliation of a period: Stripe's balance against NetSuite's records.
pub struct Reconciliation {
    pub run: mlc_store::HistoryRun,
    pub zone: jiff::tz::TimeZone,
}

impl Reconciliation {
    fn report(&self) -> Option<ReconciliationReport> {
        self.run
            .report
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }

    fn first_day(&self) -> Option<jiff::civil::Date> {
        jiff::Timestamp::from_millisecond(self.run.since)
            .ok()
            .map(|t| t.to_zoned_datetime(self.zone.clone()).date())
    }
}

#[Object]
impl Reconciliation {
    async fn id(&self) -> ID {
        ID(self.run.id.clone())
    }
    async fn state(&self) -> RunState {
        self.run.state.into()
    }
    /// First day (YYYY-MM-DD, in the connection's time zone).
    async fn from(&self) -> Option<String> {
        self.first_day().map(|d| d.to_string())
    }
    /// Last day, included.
    async fn to(&self) -> Option<String> {
        self.first_day()
            .and_then(|d| {
                d.checked_add(jiff::Span::new().days(self.run.days - 1))
                    .ok()
            })
            .map(|d| d.to_string())
    }
    /// Stripe balance transactions read so far.
    async fn scanned(&self) -> i64 {
        self.run.scanned
    }
    async fn started_at(&self) -> Option<String> {
        self.run.started_at.map(super::schema::time)
    }
    async fn finished_at(&self) -> Option<String> {
        self.run.finished_at.map(super::schema::time)
    }
    /// Why it failed, and what to do.
    async fn error(&self) -> Option<String> {
        self.run.error.clone()
    }
    /// Once it succeeded: true when every term of every currency agrees and no Stripe object
    /// is missing from NetSuite.
    async fn clean(&self) -> Option<bool> {
        self.report().map(|r| r.is_clean())
    }
    /// Per currency, once it succeeded.
    async fn currencies(&self) -> Vec<ReconciliationCurrency> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.currencies
            .iter()
            .map(|(c, t)| ReconciliationCurrency {
                currency: c.iso_code(),
                sales: term(t.sales, *c),
                fees: term(t.fees, *c),
                refunds: term(t.refunds, *c),
                credit_notes: term(t.credit_notes, *c),
                disputes: term(t.disputes, *c),
                net: term(t.net, *c),
            })
            .collect()
    }
    /// Each Stripe object that does not match, once it succeeded.
    async fn differences(&self) -> Vec<ReconciliationDifference> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.differences
            .into_iter()
            .map(|d| ReconciliationDifference {
                stripe: money(d.stripe_minor, d.currency),
                netsuite: money(d.netsuite_minor, d.currency),
                stripe_object_id: d.stripe_object,
                term: d.term,
                netsuite_external_id: d.netsuite_record,
                message: d.reason,
            })
            .collect()
    }
    /// Each payout of the period against its deposit (when payouts are posted:
    /// `posting.payout_bank_account`), once it succeeded.
    async fn payouts(&self) -> Vec<ReconciliationPayout> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.payouts
            .into_iter()
            .map(|p| ReconciliationPayout {
                stripe: money(p.stripe_minor, p.currency),
                netsuite: money(p.netsuite_minor, p.currency),
                difference: money(p.netsuite_minor - p.stripe_minor, p.currency),
                payout_id: p.payout,
                deposit_external_id: p.deposit,
            })
            .collect()
    }
    /// Balance transactions the connector does not post yet (payouts, Stripe's own fees,
    /// failed refunds), so nothing is silently left out.
    async fn not_posted(&self) -> Vec<ReconciliationNotPosted> {
        let Some(r) = self.report() else {
            return vec![];
        };
        r.not_reconciled
            .into_iter()
            .map(|(kind, n)| ReconciliationNotPosted {
                amounts: n.amounts.iter().map(|(c, m)| money(*m, *c)).collect(),
                kind,
                count: n.count,
            })
            .collect()
    }
}

#[derive(InputObject)]
pub struct ReconciliationStartInput {
    pub connection_id: ID,
    /// First day (YYYY-MM-DD) in the connection's time zone (`Connection.timeZone`).
    pub from: String,
    /// Last day, included; at most 366 days after `from`.
    pub to: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ReconciliationPayload {
    pub reconciliation: Option<Reconciliation>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct ReconcileMutation;

#[Object]
impl ReconcileMutation {
    /// Reconciles a period: Stripe's balance transactions against the NetSuite records they
    /// made, per currency (sales, fees, refunds, credit notes, disputes, net), each difference named by its Stripe
    /// object. A job of the connection; follow it on `connection.reconciliation`. It only
    /// reads. Operator or owner.
    async fn reconciliation_start(
        &self,
        ctx: &Context<'_>,
        input: ReconciliationStartInput,
    ) -> Result<ReconciliationPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let fail = |e: UserError| {
            Ok(ReconciliationPayload {
                reconciliation: None,
                user_errors: vec![e],
            })
        };
        let (_, connection) = match owned(ctx, viewer, &input.connection_id).await? {
            Ok(found) => found,
            Err(e) => return fail(e),
        };
        let day = |field: &str, value: &str| {
            value.parse::<jiff::civil::Date>().map_err(|_| {
                user_error(
                    field,
                    UserErrorCode::Invalid,
                    format!("`{value}` is not a date: write YYYY-MM-DD"),
                )
            })
        };
        let (from, to) = match (day("from", &input.from), day("to", &input.to)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return fail(e),
        };
        let zone = connection_zone(ctx, &connection);
        let (since, days) = match mlc_service::pipeline::period_of(from, to, &zone) {
            Ok(p) => p,
            Err(e) => return fail(user_error("to", UserErrorCode::Invalid, e)),
        };
        if days > MAX_DAYS {
            return fail(user_error(
                "to",
                UserErrorCode::Invalid,
                format!("a reconciliation covers at most {MAX_DAYS} days: split the period"),
            ));
        }
        let max_attempts = max_attempts(ctx);
        let run = store(ctx)?
            .scoped(&connection.scope)
            .start_history_run(
                mlc_store::HistoryRunKind::Reconcile,
                days,
                since,
                max_attempts,
            )
            .await
            .map_err(internal)?;
        wake(ctx);
        Ok(ReconciliationPayload {
            reconciliation: Some(Reconciliation { run, zone }),
            user_errors: vec![],
        })
    }
}
