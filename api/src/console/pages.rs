//! The web dashboard at `/`: server-rendered HTML (maud) over the [`Console`](mlc_service::console::Console)
//! service, plain forms and links, no script. Sign-in with the admin token sets a session cookie
//! (see [`super::auth`]); every form carries the CSRF field.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use mlc_store::{EventFilter, EventSummary};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::Value;

use super::auth::{AdminToken, SESSION_COOKIE, cookie};
use crate::http::AppState;
use mlc_service::console::{Console, ConsoleError, LastError, MoneyView};

const STYLE: &str = include_str!("dashboard.css");

/// Characters left as they are in a path segment (Stripe IDs are letters, digits and `_`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    let s = q.finish();
    if s.is_empty() { s } else { format!("?{s}") }
}

pub fn router(_state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/events", get(events))
        .route("/events/{event_id}", get(event_page))
        .route("/events/{event_id}/replay", post(replay_one))
        .route("/failed", get(failed))
        .route("/waiting", get(waiting))
        .route("/replay", post(replay_state))
        .route("/mappings", get(mappings).post(add_mapping))
}

/// The signed-in operator: the token (for the CSRF field) or the response to send instead.
/// The error side is boxed: a `Response` is large, and the happy path is the common one.
fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<AdminToken, Box<Response>> {
    let Some(token) = state.admin_token.clone() else {
        return Err(Box::new(console_off_page()));
    };
    if cookie(headers, SESSION_COOKIE).is_some_and(|c| token.session_matches(c)) {
        Ok(token)
    } else {
        Err(Box::new(
            Redirect::to(&format!("/login{}", query_string(&[("next", here)]))).into_response(),
        ))
    }
}

/// A form post: signed in and carrying the right CSRF field.
fn form_allowed(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<AdminToken, Box<Response>> {
    let token = signed_in(state, headers, "/")?;
    if token.csrf_matches(csrf) {
        Ok(token)
    } else {
        metrics::counter!(mlc_service::telemetry::names::ADMIN_DENIED).increment(1);
        Err(Box::new(message_page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the page and try again.",
        )))
    }
}

fn console_off_page() -> Response {
    message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The dashboard is off",
        "Set an admin token (MLC__ADMIN__TOKEN, at least 32 characters, or `ml-connector credentials set admin-token`) and restart ml-connector.",
    )
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        main.narrow {
            h1 { (title) }
            p { (text) }
            p { a href="/" { "Back to the overview" } }
        }
    };
    (status, Html(bare(title, body).into_string())).into_response()
}

fn error_page(e: ConsoleError) -> Response {
    let status = match e {
        ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    message_page(status, "Something is not right", &e.to_string())
}

fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ml-connector" }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

/// A signed-in page: navigation, sign-out, an optional notice, the content.
fn page(
    title: &str,
    active: &str,
    token: &AdminToken,
    notice: Option<&str>,
    body: Markup,
) -> Response {
    let nav = [
        ("/", "Overview"),
        ("/events", "Events"),
        ("/failed", "Failed"),
        ("/waiting", "Waiting"),
        ("/mappings", "Mappings"),
    ];
    let content = html! {
        header.top {
            a.brand href="/" { "ml-connector" }
            nav {
                @for (href, label) in nav {
                    a href=(href) class=@if label == active { "active" } { (label) }
                }
            }
            form.signout method="post" action="/logout" {
                input type="hidden" name="csrf" value=(token.csrf_value());
                button type="submit" { "Sign out" }
            }
        }
        main {
            @if let Some(n) = notice.filter(|n| !n.is_empty()) {
                p.notice role="status" data-testid="notice" { (n) }
            }
            h1 { (title) }
            (body)
        }
    };
    let mut resp = Html(bare(title, content).into_string()).into_response();
    // Pages show financial data: keep them out of caches and frames.
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

/// Plain words for a job state, and its CSS class.
pub fn status_words(status: &str) -> (&'static str, &'static str) {
    match status {
        "queued" => ("Queued", "st-queued"),
        "running" => ("Posting now", "st-running"),
        "waiting" => ("Waiting for a person", "st-waiting"),
        "succeeded" => ("Done", "st-done"),
        "failed" => ("Failed", "st-failed"),
        "ignored" => ("Not handled", "st-ignored"),
        _ => ("Unknown", "st-ignored"),
    }
}

/// Plain words for a Stripe event type.
pub fn event_words(event_type: &str) -> String {
    let known = match event_type {
        "invoice.paid" => "Invoice paid",
        "invoice.payment_succeeded" => "Invoice payment succeeded",
        "invoice.finalized" => "Invoice finalized",
        "charge.succeeded" => "Payment received",
        "charge.captured" => "Payment captured",
        "charge.failed" => "Payment declined",
        "charge.refunded" => "Payment refunded",
        "payment_intent.succeeded" => "Payment completed",
        "payment_intent.payment_failed" => "Payment attempt failed",
        "customer.created" => "Customer added",
        "customer.updated" => "Customer changed",
        "customer.deleted" => "Customer deleted",
        "product.created" => "Product added",
        "product.updated" => "Product changed",
        "product.deleted" => "Product deleted",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let words = event_type.replace(['.', '_'], " ");
    let mut c = words.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn status_badge(status: &str) -> Markup {
    let (words, class) = status_words(status);
    let why = match status {
        "ignored" => "The connector does not post this kind of Stripe event",
        "waiting" => "Retried by itself; a person must fix the reason first",
        "failed" => "Gave up; replay it once the reason is fixed",
        _ => "",
    };
    html! { span class={ "badge " (class) } data-status=(status) title=(why) { (words) } }
}

fn amount_cell(m: Option<&MoneyView>) -> Markup {
    html! {
        @match m {
            Some(m) => span.amount title=(format!("{} minor units", m.minor)) { (m.display) },
            None => span.muted { "—" },
        }
    }
}

fn replay_button(token: &AdminToken, event_id: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action=(format!("/events/{}/replay", seg(event_id))) {
            input type="hidden" name="csrf" value=(token.csrf_value());
            button type="submit" data-testid="replay" { (label) }
        }
    }
}

/// A table of events; with `replay`, each row has a replay button.
fn events_table(
    console: &Console,
    token: &AdminToken,
    rows: &[EventSummary],
    amounts: &std::collections::BTreeMap<String, MoneyView>,
    replay: bool,
) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty data-testid="empty" { "Nothing here." }
        } @else {
            table.events data-testid="events" {
                thead { tr {
                    th { "Received" } th { "What happened in Stripe" } th { "Stripe record" }
                    th.num { "Amount" } th { "Status" } th { "Why" }
                    @if replay { th {} }
                } }
                tbody {
                    @for e in rows {
                        tr data-event-id=(e.event_id) {
                            td.nowrap { (console.format_time(e.received_at)) }
                            td { a href=(format!("/events/{}", seg(&e.event_id))) { (event_words(&e.event_type)) } }
                            td.mono { (e.object_id.as_deref().unwrap_or("—")) }
                            td.num { (amount_cell(amounts.get(&e.event_id))) }
                            td { (status_badge(&e.status)) }
                            td.why { (e.last_error.as_deref().unwrap_or("")) }
                            @if replay {
                                td { (replay_button(token, &e.event_id, "Replay")) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct Notice {
    notice: Option<String>,
}

async fn overview(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    let token = match signed_in(&s, &headers, "/") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let o = match s.console.overview().await {
        Ok(o) => o,
        Err(e) => return error_page(e),
    };
    let c = &o.counts;
    let h = &o.health;
    let max = o
        .activity
        .iter()
        .map(|b| b.received.max(b.posted))
        .max()
        .unwrap_or(0)
        .max(1);
    let received_24h: i64 = o.activity.iter().map(|b| b.received).sum();
    let posted_24h: i64 = o.activity.iter().map(|b| b.posted).sum();
    let age = |secs: Option<u64>| match secs {
        Some(s) if s >= 60 => format!("{} min", s / 60),
        Some(s) => format!("{s} s"),
        None => "no token yet".into(),
    };
    let body = html! {
        section.cards {
            a.card.done href="/events?status=succeeded" data-testid="count-succeeded" {
                span.n { (c.succeeded) } span.l { "Done" }
            }
            a.card.waiting href="/waiting" data-testid="count-waiting" {
                span.n { (c.waiting) } span.l { "Waiting for a person" }
            }
            a.card.failed href="/failed" data-testid="count-failed" {
                span.n { (c.failed) } span.l { "Failed" }
            }
            a.card href="/events?status=queued" data-testid="count-queued" {
                span.n { (c.queued + c.running) } span.l { "In the queue" }
            }
            a.card href="/events" data-testid="count-events" {
                span.n { (c.events) } span.l { "Stripe events received" }
            }
        }
        section {
            h2 { "Last 24 hours" }
            p.muted { (received_24h) " events received, " (posted_24h) " NetSuite records posted. Hours in " (s.console.time_zone.iana_name().unwrap_or("the configured zone")) "." }
            div.chart data-testid="activity" {
                @for b in &o.activity {
                    div.hour title=(format!("{}: {} received, {} posted", s.console.format_time(b.start), b.received, b.posted)) {
                        div.bar.received style=(format!("height:{}%", b.received * 100 / max)) {}
                        div.bar.posted style=(format!("height:{}%", b.posted * 100 / max)) {}
                    }
                }
            }
            p.legend { span.key.received {} " received  " span.key.posted {} " posted" }
        }
        section.health data-testid="health" {
            h2 { "Health" }
            div.cols {
                div.panel {
                    h3 { "Stripe" }
                    dl {
                        dt { "Last event received" }
                        dd { (h.stripe.last_event_received_at.map(|t| s.console.format_time(t)).unwrap_or_else(|| "none yet".into())) }
                        dt { "Last Stripe error" }
                        dd { (last_error(&s.console, h.stripe.last_error.as_ref())) }
                    }
                }
                div.panel {
                    h3 { "NetSuite" }
                    dl {
                        @if !h.netsuite.configured {
                            dt { "Posting" } dd { "not configured on this instance" }
                        } @else if h.netsuite.auth == "m2m" {
                            dt { "Access token" }
                            dd data-testid="token-age" {
                                @if h.netsuite.token_valid == Some(true) {
                                    "valid, obtained " (age(h.netsuite.token_age_secs)) " ago, renewed before it expires in " (age(h.netsuite.token_expires_in_secs))
                                } @else {
                                    (age(h.netsuite.token_age_secs)) ": none valid (one is requested on the next call)"
                                }
                            }
                            @if let Some(e) = &h.netsuite.token_error {
                                dt { "Sign-in error" } dd.bad { (e) }
                            }
                        } @else {
                            dt { "Sign-in" } dd { "token-based authentication" }
                        }
                        dt { "Last NetSuite error" }
                        dd { (last_error(&s.console, h.netsuite.last_error.as_ref())) }
                    }
                }
                div.panel {
                    h3 { "Queue" }
                    dl {
                        dt { "Waiting for a worker" } dd data-testid="queue-depth" { (h.queue_depth) }
                        dt { "Oldest due job" }
                        dd { (h.oldest_queued_age_ms.map(|ms| format!("{} s", ms / 1000)).unwrap_or_else(|| "none".into())) }
                        dt { "Store" } dd { (h.store) }
                    }
                }
            }
        }
    };
    page("Overview", "Overview", &token, n.notice.as_deref(), body)
}

fn last_error(console: &Console, e: Option<&LastError>) -> Markup {
    html! {
        @match e {
            None => span.good { "none" },
            Some(e) => {
                span.bad { (e.message) }
                br;
                span.muted { (console.format_time(e.at)) }
                @if let Some(id) = &e.event_id {
                    " · " a href=(format!("/events/{}", seg(id))) { "open event" }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct EventsForm {
    status: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    q: Option<String>,
    since: Option<String>,
    until: Option<String>,
    page: Option<i64>,
    notice: Option<String>,
}

const PAGE_SIZE: i64 = 50;

async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    f: Result<Query<EventsForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = match signed_in(&s, &headers, "/events") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let f = match f {
        Ok(Query(f)) => f,
        Err(e) => return error_page(ConsoleError::BadRequest(e.body_text())),
    };
    let q =
        f.q.as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string();
    // One search box for both systems: digits or an external ID (stripe_…) are NetSuite's.
    let netsuite_search =
        !q.is_empty() && (q.bytes().all(|b| b.is_ascii_digit()) || q.starts_with("stripe_"));
    let page_no = f.page.unwrap_or(1).max(1);
    let query = super::filter::EventsQuery {
        status: f.status.clone(),
        event_type: f.event_type.clone(),
        stripe_id: (!netsuite_search).then(|| q.clone()),
        netsuite_id: netsuite_search.then(|| q.clone()),
        since: f.since.clone(),
        until: f.until.clone(),
        limit: Some(PAGE_SIZE),
        offset: Some((page_no - 1) * PAGE_SIZE),
    };
    let result = async {
        let filter = query.to_filter(&s.console.time_zone)?;
        let rows = s.console.events(&filter).await?;
        let amounts = s.console.amounts(&rows).await?;
        Ok::<_, ConsoleError>((rows, amounts))
    }
    .await;
    let (rows, amounts) = match result {
        Ok(x) => x,
        Err(e) => return error_page(e),
    };
    let status = f.status.clone().unwrap_or_default();
    let event_type = f.event_type.clone().unwrap_or_default();
    let since = f.since.clone().unwrap_or_default();
    let until = f.until.clone().unwrap_or_default();
    let link = |p: i64| {
        format!(
            "/events{}",
            query_string(&[
                ("status", &status),
                ("type", &event_type),
                ("q", &q),
                ("since", &since),
                ("until", &until),
                ("page", &p.to_string()),
            ])
        )
    };
    let body = html! {
        form.filters method="get" action="/events" data-testid="filters" {
            label { "Stripe or NetSuite ID"
                input type="search" name="q" value=(q) placeholder="evt_…, in_…, ch_…, or a NetSuite ID";
            }
            label { "Status"
                select name="status" {
                    option value="" { "Any" }
                    @for st in ["succeeded", "waiting", "failed", "queued", "running", "ignored"] {
                        option value=(st) selected[status == st] { (status_words(st).0) }
                    }
                }
            }
            label { "Type"
                select name="type" {
                    option value="" { "Any" }
                    @for t in mlc_service::pipeline::HANDLED_EVENT_TYPES {
                        option value=(t) selected[event_type == *t] { (event_words(t)) }
                    }
                }
            }
            label { "From" input type="date" name="since" value=(since); }
            label { "Before" input type="date" name="until" value=(until); }
            button type="submit" { "Search" }
        }
        (events_table(&s.console, &token, &rows, &amounts, false))
        p.pager {
            @if page_no > 1 { a href=(link(page_no - 1)) { "← Newer" } " " }
            @if rows.len() as i64 == PAGE_SIZE { a href=(link(page_no + 1)) { "Older →" } }
        }
    };
    page("Events", "Events", &token, f.notice.as_deref(), body)
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

async fn event_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
    Query(n): Query<Notice>,
) -> Response {
    let token = match signed_in(&s, &headers, &format!("/events/{}", seg(&event_id))) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let d = match s.console.event(&event_id).await {
        Ok(d) => d,
        Err(e) => return error_page(e),
    };
    let c = &s.console;
    let replayable = matches!(
        d.status.as_str(),
        "failed" | "waiting" | "succeeded" | "queued"
    );
    let body = html! {
        section.summary {
            dl.grid {
                dt { "Status" } dd data-testid="event-status" { (status_badge(&d.status)) }
                dt { "What happened" } dd { (event_words(&d.event_type)) " " span.mono.muted { "(" (d.event_type) ")" } }
                dt { "Stripe event" } dd.mono { (d.event_id) }
                dt { "Stripe record" } dd.mono { (d.object_id.as_deref().unwrap_or("—")) }
                dt { "Amount (as sent)" } dd { (amount_cell(d.amount.as_ref())) }
                dt { "Received" } dd { (c.format_time(d.received_at)) @if d.deliveries > 1 { " · delivered " (d.deliveries) " times (stored once)" } }
                dt { "Mode" } dd { @if d.livemode { "live" } @else { "test" } }
                @if let Some(job) = &d.job {
                    dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
                    @if let Some(e) = &job.last_error {
                        dt { "Why" } dd.bad data-testid="event-error" { (e) }
                    }
                }
            }
            @if matches!(d.status.as_str(), "failed" | "waiting") && !d.postings.is_empty() {
                p.notice data-testid="already-posted" {
                    "This Stripe record is already in NetSuite (see below), posted by another event of the same sale. Replaying this event only confirms it."
                }
            }
            @if replayable {
                (replay_button(&token, &d.event_id, "Replay this event"))
                p.muted { "Replaying is safe: anything already in NetSuite is not posted again." }
            }
        }
        section {
            h2 { "NetSuite records" }
            @if d.postings.is_empty() {
                p.empty { "None posted for this Stripe record yet." }
            } @else {
                table data-testid="postings" {
                    thead { tr { th { "Kind" } th { "NetSuite record" } th { "Internal ID" } th { "External ID" } th.num { "Amount" } th { "Posted" } } }
                    tbody {
                        @for p in &d.postings {
                            tr {
                                td { (p.posting.kind.replace('_', " ")) }
                                td { (p.posting.netsuite_record_type) }
                                td.mono { (p.posting.netsuite_internal_id) }
                                td.mono { (p.posting.external_id) }
                                td.num { (amount_cell(p.amount.as_ref())) }
                                td.nowrap { (c.format_time(p.posting.created_at)) }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "What happened, step by step" }
            ol.timeline data-testid="audit" {
                @for a in &d.audit {
                    li {
                        span.when { (c.format_time(a.at)) }
                        span.step { (a.step.replace('_', " ")) }
                        span.what { (a.message) }
                    }
                }
            }
        }
        section.raw {
            h2 { "Details" }
            details data-testid="raw-event" {
                summary { "The event as Stripe sent it" }
                pre { (pretty(&d.raw_event)) }
            }
            details data-testid="stripe-object" {
                summary { "The Stripe record as fetched from Stripe" }
                @match &d.stripe_object {
                    Some(v) => pre { (pretty(v)) },
                    None => p.muted { "Not fetched (yet)." },
                }
            }
            details data-testid="netsuite-request" {
                summary { "What was sent to NetSuite" }
                @match &d.netsuite_request {
                    Some(v) => pre { (pretty(v)) },
                    None => p.muted { "Nothing sent (yet)." },
                }
            }
            details data-testid="netsuite-response" {
                summary { "NetSuite's answer" }
                @match &d.netsuite_response {
                    Some(v) => pre { (pretty(v)) },
                    None => p.muted { "No answer recorded (yet)." },
                }
            }
        }
    };
    page(
        &format!(
            "{} · {}",
            event_words(&d.event_type),
            d.object_id.as_deref().unwrap_or(&d.event_id)
        ),
        "Events",
        &token,
        n.notice.as_deref(),
        body,
    )
}

async fn state_list(
    s: &AppState,
    headers: &HeaderMap,
    state: &str,
    notice: Option<&str>,
) -> Response {
    let (here, title, intro, active) = match state {
        "failed" => (
            "/failed",
            "Failed",
            "These events could not be posted. Fix the cause (the reason is shown), then replay them.",
            "Failed",
        ),
        _ => (
            "/waiting",
            "Waiting for a person",
            "These wait for something only a person can do, usually a product mapping. They are retried by themselves; once fixed, replay them or add the mapping and they post at once.",
            "Waiting",
        ),
    };
    let token = match signed_in(s, headers, here) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let result = async {
        let rows = s
            .console
            .events(&EventFilter {
                status: Some(state.into()),
                limit: 500,
                ..EventFilter::default()
            })
            .await?;
        let amounts = s.console.amounts(&rows).await?;
        Ok::<_, ConsoleError>((rows, amounts))
    }
    .await;
    let (rows, amounts) = match result {
        Ok(x) => x,
        Err(e) => return error_page(e),
    };
    let body = html! {
        p { (intro) }
        @if !rows.is_empty() {
            form.inline method="post" action="/replay" {
                input type="hidden" name="csrf" value=(token.csrf_value());
                input type="hidden" name="status" value=(state);
                button type="submit" data-testid="replay-all" { "Replay all " (rows.len()) }
            }
            @if state == "waiting" { " " a href="/mappings" { "Add a product mapping" } }
        }
        (events_table(&s.console, &token, &rows, &amounts, true))
    };
    page(title, active, &token, notice, body)
}

async fn failed(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    state_list(&s, &headers, "failed", n.notice.as_deref()).await
}

async fn waiting(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    state_list(&s, &headers, "waiting", n.notice.as_deref()).await
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn back_with(path: &str, notice: &str) -> Response {
    Redirect::to(&format!("{path}{}", query_string(&[("notice", notice)]))).into_response()
}

async fn replay_one(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(event_id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = form_allowed(&s, &headers, &f.csrf) {
        return *r;
    }
    match s.console.replay(std::slice::from_ref(&event_id)).await {
        Ok(results) => {
            let detail = results
                .first()
                .map(|r| format!("{}: {}", r.event_id, r.detail))
                .unwrap_or_default();
            back_with(&format!("/events/{}", seg(&event_id)), &detail)
        }
        Err(e) => error_page(e),
    }
}

#[derive(Debug, Deserialize)]
struct ReplayStateForm {
    #[serde(default)]
    csrf: String,
    status: String,
}

async fn replay_state(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ReplayStateForm>,
) -> Response {
    if let Err(r) = form_allowed(&s, &headers, &f.csrf) {
        return *r;
    }
    match s.console.replay_state(&f.status, None).await {
        Ok(n) => back_with(
            if f.status == "waiting" {
                "/waiting"
            } else {
                "/failed"
            },
            &format!("{n} event(s) queued for replay; they are processed within seconds."),
        ),
        Err(e) => error_page(e),
    }
}

async fn mappings(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(n): Query<Notice>,
) -> Response {
    let token = match signed_in(&s, &headers, "/mappings") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let result =
        async { Ok::<_, ConsoleError>((s.console.unmapped().await?, s.console.mappings().await?)) }
            .await;
    let (unmapped, links) = match result {
        Ok(x) => x,
        Err(e) => return error_page(e),
    };
    let csrf = token.csrf_value();
    let body = html! {
        section {
            h2 { "Products without a NetSuite item" }
            @if unmapped.is_empty() {
                p.empty data-testid="no-unmapped" { "Every Stripe product seen so far has a NetSuite item." }
            } @else {
                p { "Sales of these products wait until you tell the connector which NetSuite item they are. Enter the item's internal ID (shown on the item in NetSuite); the waiting sales then post at once." }
                table data-testid="unmapped" {
                    thead { tr { th { "Stripe product" } th { "Name" } th.num { "Waiting sales" } th.num { "Amount waiting" } th { "First seen" } th { "NetSuite item" } } }
                    tbody {
                        @for u in &unmapped {
                            tr data-product=(u.stripe_product_id) {
                                td.mono { (u.stripe_product_id) }
                                td { (u.name.as_deref().unwrap_or("(name unknown)")) }
                                td.num { (u.waiting_events.len()) }
                                td.num {
                                    @for (i, m) in u.waiting_amounts.iter().enumerate() {
                                        @if i > 0 { br; }
                                        (m.display)
                                    }
                                }
                                td.nowrap { (s.console.format_time(u.first_seen)) }
                                td {
                                    form.inline method="post" action="/mappings" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="stripe_product_id" value=(u.stripe_product_id);
                                        input type="text" name="netsuite_item_id" inputmode="numeric" pattern="[0-9]+" required placeholder="Item internal ID" aria-label="NetSuite item internal ID";
                                        button type="submit" data-testid="map" { "Map" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Add a mapping" }
            form.filters method="post" action="/mappings" data-testid="add-mapping" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Stripe product ID" input type="text" name="stripe_product_id" required placeholder="prod_…"; }
                label { "NetSuite item internal ID" input type="text" name="netsuite_item_id" inputmode="numeric" pattern="[0-9]+" required; }
                button type="submit" { "Save mapping" }
            }
        }
        section {
            h2 { "Mappings in use" }
            @if links.is_empty() {
                p.empty { "None yet: they are found in NetSuite the first time a product is sold." }
            } @else {
                table data-testid="mappings" {
                    thead { tr { th { "Stripe product" } th { "NetSuite item" } th { "How it was found" } th { "Since" } } }
                    tbody {
                        @for l in &links {
                            tr {
                                td.mono { (l.stripe_id) }
                                td.mono { (l.netsuite_internal_id) }
                                td { (match l.source.as_str() {
                                    "manual" => "set by a person".to_string(),
                                    "externalid" | "external_id" => "found by its external ID".to_string(),
                                    "created" => "created by the connector".to_string(),
                                    f if f.starts_with("cust") => format!("found by its Stripe product field ({f})"),
                                    other => other.to_string(),
                                }) }
                                td.nowrap { (s.console.format_time(l.updated_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(
        "Product mappings",
        "Mappings",
        &token,
        n.notice.as_deref(),
        body,
    )
}

#[derive(Debug, Deserialize)]
struct MappingForm {
    #[serde(default)]
    csrf: String,
    stripe_product_id: String,
    netsuite_item_id: String,
}

async fn add_mapping(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<MappingForm>,
) -> Response {
    if let Err(r) = form_allowed(&s, &headers, &f.csrf) {
        return *r;
    }
    match s
        .console
        .set_mapping(f.stripe_product_id.trim(), f.netsuite_item_id.trim())
        .await
    {
        Ok(released) => back_with(
            "/mappings",
            &format!(
                "{} is now NetSuite item {}; {released} waiting sale(s) released and posting now.",
                f.stripe_product_id.trim(),
                f.netsuite_item_id.trim()
            ),
        ),
        Err(ConsoleError::BadRequest(m)) => back_with("/mappings", &m),
        Err(e) => error_page(e),
    }
}

#[derive(Debug, Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
    failed: Option<String>,
}

/// Only same-site paths: never a redirect to another host.
fn safe_next(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and newlines in URLs ("/\t/evil" becomes "//evil"): refuse them.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

async fn login_page(State(s): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if s.admin_token.is_none() {
        return console_off_page();
    }
    let next = safe_next(q.next.as_deref());
    let body = html! {
        main.narrow {
            h1 { "Sign in to ml-connector" }
            @if q.failed.is_some() {
                p.notice.bad role="alert" data-testid="login-error" { "That token is not right. Check it and try again." }
            }
            form method="post" action="/login" data-testid="login" {
                input type="hidden" name="next" value=(next);
                label { "Admin token"
                    input type="password" name="token" autocomplete="current-password" required autofocus;
                }
                button type="submit" { "Sign in" }
            }
            p.muted { "The admin token is set by whoever runs the connector (admin.token or MLC__ADMIN__TOKEN)." }
        }
    };
    let status = if q.failed.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    (status, Html(bare("Sign in", body).into_string())).into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let Some(token) = s.admin_token.as_ref() else {
        return console_off_page();
    };
    let next = safe_next(f.next.as_deref());
    if !token.matches(&f.token) {
        metrics::counter!(mlc_service::telemetry::names::ADMIN_DENIED).increment(1);
        tracing::warn!("dashboard sign-in refused: wrong admin token");
        return Redirect::to(&format!(
            "/login{}",
            query_string(&[("next", &next), ("failed", "1")])
        ))
        .into_response();
    }
    let mut resp = Redirect::to(&next).into_response();
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200",
        token.session_value()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = form_allowed(&s, &headers, &f.csrf) {
        return *r;
    }
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("mlc_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words() {
        assert_eq!(event_words("invoice.paid"), "Invoice paid");
        assert_eq!(event_words("payout.created"), "Payout created");
        assert_eq!(status_words("waiting").0, "Waiting for a person");
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/events?q=1")), "/events?q=1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
