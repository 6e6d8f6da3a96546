//! The operator console: one service layer behind the web dashboard (`/`), the GraphQL API
//! (`/graphql`) and the `status`, `events` and `replay` commands, so every view and action means
//! the same thing wherever it is used. Its HTTP faces (the dashboard's pages and sign-in, the
//! GraphQL resolvers) live in the binary's `console` and `graphql` modules; nothing here knows
//! about HTTP.
//!
//! Actions (replay, add a mapping) go through the same store calls as the `replay` and
//! `mappings set` commands, so they are audited the same way and safe to repeat.

use std::collections::BTreeMap;

use mlc_core::{Currency, Money, UnixMillis, now_millis};
use mlc_netsuite::NetSuiteClient;
use mlc_store::{
    ActivityBucket, AuditEntry, ConnectionStore, EventFilter, EventSummary, Job, JobState, Link,
    Posting, StoreError,
};
use serde::Serialize;
use serde_json::Value;

/// What the console reads and acts on.
#[derive(Clone)]
pub struct Console {
    pub store: ConnectionStore,
    /// The pipeline's NetSuite client, for its token's age (`None` when posting is off).
    pub netsuite: Option<NetSuiteClient>,
    /// The zone dates are shown in.
    pub time_zone: jiff::tz::TimeZone,
}

/// Errors of console operations, each with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the store did not answer: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// Job counts by state, plus the events that needed no work.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub queued: i64,
    pub running: i64,
    pub waiting: i64,
    pub succeeded: i64,
    pub failed: i64,
    /// Of `succeeded`: jobs that only recorded their event because posting was not configured
    /// when they ran (an instance without Stripe and NetSuite credentials). Not posted.
    pub accepted_only: i64,
    /// Events stored in all (acted on or not).
    pub events: i64,
}

/// The latest error seen from one side.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: UnixMillis,
    pub event_id: Option<String>,
    pub message: String,
}

/// NetSuite's side of the health report.
#[derive(Debug, Clone, Serialize)]
pub struct NetSuiteHealth {
    /// Posting to NetSuite is configured on this instance.
    pub configured: bool,
    /// `m2m`, `tba`, or `none`.
    pub auth: &'static str,
    /// An M2M access token is cached and unexpired.
    pub token_valid: Option<bool>,
    /// Seconds since the cached token was obtained (tokens last 3600 s; renewed 300 s early).
    pub token_age_secs: Option<u64>,
    pub token_expires_in_secs: Option<u64>,
    /// The last token request's failure, if it failed.
    pub token_error: Option<String>,
    pub requests_made: Option<u64>,
    pub last_error: Option<LastError>,
}

/// The health of both sides and of the queue.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// `ok`, or `attention` when something failed or waits for a person.
    pub status: &'static str,
    pub store: String,
    pub queue_depth: i64,
    /// How long the oldest due job has waited for a worker, in milliseconds.
    pub oldest_queued_age_ms: Option<i64>,
    pub waiting_for_a_person: i64,
    pub failed: i64,
    pub stripe: StripeHealth,
    pub netsuite: NetSuiteHealth,
}

/// Stripe's side of the health report.
#[derive(Debug, Clone, Serialize)]
pub struct StripeHealth {
    pub last_event_received_at: Option<UnixMillis>,
    pub last_error: Option<LastError>,
}

/// Everything the overview shows.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub counts: Counts,
    /// Events received and NetSuite records posted per hour over the last 24 hours.
    pub activity: Vec<ActivityBucket>,
    pub health: Health,
}

/// An event with what the connector did about it.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    pub event_id: String,
    pub event_type: String,
    pub object_id: Option<String>,
    pub livemode: bool,
    pub received_at: UnixMillis,
    pub deliveries: i64,
    /// The job's state, or `ignored`.
    pub status: String,
    pub job: Option<Job>,
    /// The amount the event carried (as sent; the posted amount comes from the fetched object).
    pub amount: Option<MoneyView>,
    /// The event exactly as Stripe sent it (parsed; `null` if it was not JSON).
    pub raw_event: Value,
    /// The Stripe object as last fetched from the Stripe API.
    pub stripe_object: Option<Value>,
    /// The last NetSuite record body the connector built, and NetSuite's answer.
    pub netsuite_request: Option<Value>,
    pub netsuite_response: Option<Value>,
    pub postings: Vec<PostingView>,
    pub audit: Vec<AuditEntry>,
}

/// An amount with its exact decimal and a display form.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MoneyView {
    pub minor: i64,
    pub currency: String,
    /// Exact decimal in the currency's exponent, e.g. `1234.50`.
    pub amount: String,
    /// `1,234.50 USD`.
    pub display: String,
}

impl MoneyView {
    pub fn new(m: Money) -> Self {
        MoneyView {
            minor: m.minor(),
            currency: m.currency().iso_code(),
            amount: m.to_decimal().to_string(),
            display: format_money(m),
        }
    }
}

/// A NetSuite record posted for the event's object.
#[derive(Debug, Clone, Serialize)]
pub struct PostingView {
    #[serde(flatten)]
    pub posting: Posting,
    pub amount: Option<MoneyView>,
}

/// A product without a NetSuite item and the events waiting for it.
#[derive(Debug, Clone, Serialize)]
pub struct UnmappedView {
    pub stripe_product_id: String,
    pub name: Option<String>,
    pub first_seen: UnixMillis,
    pub last_seen: UnixMillis,
    pub waiting_events: Vec<String>,
    /// Amounts waiting, per currency, as sent with the events.
    pub waiting_amounts: Vec<MoneyView>,
}

/// What a replay request did to one event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplayResult {
    pub event_id: String,
    /// `queued`, `not_found`, or `not_replayed` (running now, or an ignored event with no job).
    pub outcome: &'static str,
    pub detail: String,
}

/// `1,234.50 USD`: digits grouped by thousands, the currency's exponent kept exactly.
pub fn format_money(m: Money) -> String {
    let text = m.to_decimal().abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if m.minor() < 0 { "-" } else { "" };
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    format!("{sign}{grouped}{frac} {}", m.currency().iso_code())
}

/// The sale an event is about and its amount as sent: an invoice's `amount_due` (or `total`), a
/// charge's or payment intent's `amount`. The sale key is the payment intent when there is one,
/// so a charge and its payment intent count once.
pub fn event_sale(body: &Value) -> Option<(String, Money)> {
    let object = &body["data"]["object"];
    let amount = match object["object"].as_str() {
        Some("invoice") => object["amount_due"]
            .as_i64()
            .or_else(|| object["total"].as_i64()),
        Some("charge" | "payment_intent" | "checkout.session") => object["amount"]
            .as_i64()
            .or_else(|| object["amount_total"].as_i64()),
        _ => None,
    }?;
    let currency = Currency::parse(object["currency"].as_str()?).ok()?;
    let key = object["payment_intent"]
        .as_str()
        .or_else(|| object["id"].as_str())?
        .to_string();
    Some((key, Money::new(amount, currency)))
}

/// Unix milliseconds from an RFC 3339 time, or from a date (`YYYY-MM-DD`), taken as the start
/// of that day in `tz`: a finance person means their own day.
pub fn parse_time(s: &str, tz: &jiff::tz::TimeZone) -> Result<UnixMillis, String> {
    let s = s.trim();
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let date: jiff::civil::Date = s
        .parse()
        .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    date.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("`{s}`: {e}"))
}

/// A stored posting's amount.
fn posting_amount(p: &Posting) -> Option<MoneyView> {
    let currency = Currency::parse(&p.currency).ok()?;
    Some(MoneyView::new(Money::new(p.amount_minor, currency)))
}

impl Console {
    pub fn new(
        store: ConnectionStore,
        netsuite: Option<NetSuiteClient>,
        time_zone: jiff::tz::TimeZone,
    ) -> Self {
        Console {
            store,
            netsuite,
            time_zone,
        }
    }

    /// `2026-11-27 09:04 EST` in the configured zone.
    pub fn format_time(&self, ms: UnixMillis) -> String {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned_datetime(self.time_zone.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_else(|_| ms.to_string())
    }

    pub async fn counts(&self) -> Result<Counts, ConsoleError> {
        let by_state = self.store.job_counts().await?;
        let n = |s: JobState| {
            by_state
                .iter()
                .find(|(st, _)| *st == s)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        Ok(Counts {
            queued: n(JobState::Queued),
            running: n(JobState::Running),
            waiting: n(JobState::Waiting),
            succeeded: n(JobState::Succeeded),
            failed: n(JobState::Failed),
            accepted_only: self.store.count_accepted_only_jobs().await?,
            events: self.store.count_events().await?,
        })
    }

    async fn last_error(&self, prefix: &str) -> Result<Option<LastError>, ConsoleError> {
        Ok(self
            .store
            .last_error_containing(prefix)
            .await?
            .map(|a| LastError {
                at: a.at,
                event_id: a.event_id,
                message: a.message,
            }))
    }

    pub async fn health(&self) -> Result<Health, ConsoleError> {
        let store = match self.store.store().ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let counts = self.counts().await?;
        let token = self.netsuite.as_ref().and_then(|c| c.token_status());
        let netsuite = NetSuiteHealth {
            configured: self.netsuite.is_some(),
            auth: match (&self.netsuite, &token) {
                (None, _) => "none",
                (Some(_), Some(_)) => "m2m",
                (Some(_), None) => "tba",
            },
            token_valid: token.as_ref().map(|t| t.valid),
            token_age_secs: token.as_ref().and_then(|t| t.age).map(|d| d.as_secs()),
            token_expires_in_secs: token
                .as_ref()
                .and_then(|t| t.expires_in)
                .map(|d| d.as_secs()),
            token_error: token.as_ref().and_then(|t| t.last_error.clone()),
            requests_made: self.netsuite.as_ref().map(|c| c.requests_made()),
            last_error: self.last_error("NetSuite: ").await?,
        };
        let last_event = self
            .store
            .list_events(&EventFilter {
                limit: 1,
                ..EventFilter::default()
            })
            .await?
            .first()
            .map(|e| e.received_at);
        let attention = counts.failed > 0 || counts.waiting > 0 || store != "ok";
        Ok(Health {
            status: if attention { "attention" } else { "ok" },
            store,
            queue_depth: counts.queued + counts.running,
            oldest_queued_age_ms: self.store.store().oldest_queued_age_ms().await?,
            waiting_for_a_person: counts.waiting,
            failed: counts.failed,
            stripe: StripeHealth {
                last_event_received_at: last_event,
                last_error: self.last_error("Stripe: ").await?,
            },
            netsuite,
        })
    }

    /// Events and postings per hour over the last `hours` hours.
    pub async fn activity(&self, hours: i64) -> Result<Vec<ActivityBucket>, ConsoleError> {
        let hours = hours.clamp(1, 24 * 31);
        let now = now_millis();
        Ok(self
            .store
            .activity(now - (hours - 1) * 3_600_000, now, 3_600_000)
            .await?)
    }

    pub async fn overview(&self) -> Result<Overview, ConsoleError> {
        Ok(Overview {
            counts: self.counts().await?,
            activity: self.activity(24).await?,
            health: self.health().await?,
        })
    }

    /// Checks a filter's values and lists the matching events, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, ConsoleError> {
        if let Some(s) = filter.status.as_deref().filter(|s| !s.is_empty())
            && s != "ignored"
            && JobState::parse(s).is_none()
        {
            return Err(ConsoleError::BadRequest(format!(
                "unknown status `{s}`: use queued, running, waiting, succeeded, failed or ignored"
            )));
        }
        Ok(self.store.list_events(filter).await?)
    }

    /// The amount each listed event carried, by event ID (for lists).
    pub async fn amounts(
        &self,
        events: &[EventSummary],
    ) -> Result<BTreeMap<String, MoneyView>, ConsoleError> {
        let mut out = BTreeMap::new();
        for e in events {
            if let Some(ev) = self.store.get_event(&e.event_id).await?
                && let Ok(body) = crate::pipeline::parse_event_body(&ev.raw_body)
                && let Some((_, m)) = event_sale(&body)
            {
                out.insert(e.event_id.clone(), MoneyView::new(m));
            }
        }
        Ok(out)
    }

    pub async fn event(&self, event_id: &str) -> Result<EventDetail, ConsoleError> {
        let ev = self
            .store
            .get_event(event_id)
            .await?
            .ok_or_else(|| ConsoleError::NotFound(format!("no event {event_id} is stored")))?;
        let job = self.store.get_job_for_event(event_id).await?;
        let audit = self.store.audit_for_event(event_id).await?;
        // The intake's JSON rule: anything it stored parses here.
        let raw_event: Value =
            crate::pipeline::parse_event_body(&ev.raw_body).unwrap_or(Value::Null);
        // The steps that write to NetSuite: a sale, and the credit memos and refunds of money
        // that goes back (their entries hold the request they sent and the record made).
        const WRITES: &[&str] = &[
            "posted",
            "credit_memo_posted",
            "refund_posted",
            "void_posted",
            "writeoff_posted",
        ];
        let latest = |steps: &[&str], key: Option<&str>| -> Option<Value> {
            audit.iter().rev().find_map(|a| {
                if !steps.contains(&a.step.as_str()) {
                    return None;
                }
                let data = a.data.as_ref()?;
                match key {
                    Some(k) => data.get(k).cloned(),
                    None => Some(data.clone()),
                }
            })
        };
        let postings = match &ev.object_id {
            Some(o) => self.store.postings_for_object(o).await?,
            None => Vec::new(),
        };
        Ok(EventDetail {
            amount: event_sale(&raw_event).map(|(_, m)| MoneyView::new(m)),
            stripe_object: latest(&["fetched"], Some("object")),
            netsuite_request: latest(&["mapped"], Some("request"))
                .or_else(|| latest(&WRITES[1..], Some("request"))),
            netsuite_response: latest(WRITES, None),
            status: job
                .as_ref()
                .map(|j| j.state.to_string())
                .unwrap_or_else(|| "ignored".into()),
            event_id: ev.event_id,
            event_type: ev.event_type,
            object_id: ev.object_id,
            livemode: ev.livemode,
            received_at: ev.received_at,
            deliveries: ev.deliveries,
            job,
            raw_event,
            postings: postings
                .into_iter()
                .map(|p| PostingView {
                    amount: posting_amount(&p),
                    posting: p,
                })
                .collect(),
            audit,
        })
    }

    /// Queues events again (attempts reset, audited `replayed`). Safe: what already posted is
    /// not posted again.
    pub async fn replay(&self, event_ids: &[String]) -> Result<Vec<ReplayResult>, ConsoleError> {
        let mut out = Vec::with_capacity(event_ids.len());
        for id in event_ids {
            let id = id.trim();
            let result = if self.store.get_event(id).await?.is_none() {
                ReplayResult {
                    event_id: id.to_string(),
                    outcome: "not_found",
                    detail: "no such event is stored".into(),
                }
            } else if self.store.requeue_event(id).await? {
                ReplayResult {
                    event_id: id.to_string(),
                    outcome: "queued",
                    detail: "queued for replay".into(),
                }
            } else {
                let state = self
                    .store
                    .get_job_for_event(id)
                    .await?
                    .map(|j| format!("its job is {}", j.state))
                    .unwrap_or_else(|| "it is ignored (the connector has nothing to do)".into());
                ReplayResult {
                    event_id: id.to_string(),
                    outcome: "not_replayed",
                    detail: format!("not replayed: {state}"),
                }
            };
            out.push(result);
        }
        Ok(out)
    }

    /// Queues every event whose job is failed, waiting or succeeded (changed since `since`).
    pub async fn replay_state(
        &self,
        status: &str,
        since: Option<UnixMillis>,
    ) -> Result<u64, ConsoleError> {
        let state = JobState::parse(status)
            .filter(|s| {
                matches!(
                    s,
                    JobState::Failed | JobState::Waiting | JobState::Succeeded
                )
            })
            .ok_or_else(|| {
                ConsoleError::BadRequest(format!(
                    "status `{status}` cannot be replayed: use failed, waiting or succeeded"
                ))
            })?;
        Ok(self.store.requeue_where(state, since).await?)
    }

    pub async fn mappings(&self) -> Result<Vec<Link>, ConsoleError> {
        Ok(self.store.list_item_links().await?)
    }

    pub async fn unmapped(&self) -> Result<Vec<UnmappedView>, ConsoleError> {
        let mut out = Vec::new();
        for (p, events) in crate::mappings::unmapped_with_waiting(&self.store).await? {
            let totals = crate::mappings::waiting_totals(&self.store, &events).await?;
            out.push(UnmappedView {
                stripe_product_id: p.stripe_product_id,
                name: p.name,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
                waiting_events: events,
                waiting_amounts: totals
                    .into_iter()
                    .filter_map(|(code, minor)| {
                        Some(MoneyView::new(Money::new(
                            minor,
                            Currency::parse(&code).ok()?,
                        )))
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    /// Maps a product to an item (audited) and releases the events waiting for it; returns how
    /// many were released.
    /// The IDs are taken as given (callers trim what people typed).
    pub async fn set_mapping(&self, product: &str, item: &str) -> Result<u64, ConsoleError> {
        mlc_core::StripeId::parse(mlc_core::StripeIdKind::Product, product).map_err(|e| {
            ConsoleError::BadRequest(format!("`{product}` is not a Stripe product ID: {e}"))
        })?;
        mlc_core::NetSuiteInternalId::parse(item).map_err(|_| {
            ConsoleError::BadRequest(format!(
                "`{item}` is not a NetSuite internal ID (digits, as NetSuite shows on the item)"
            ))
        })?;
        Ok(crate::mappings::set_mapping(&self.store, product, item).await?)
    }
}
