//! Payouts (`po_…`) and the account balance (`GET /v1/balance`).
//!
//! Automatic payouts (`POST /_sim/payouts/run`) sweep every balance transaction not yet paid out
//! in a settlement currency into one payout whose amount is the sum of their `net`; each covered
//! transaction remembers its payout internally (`_payout`), which is what
//! `GET /v1/balance_transactions?payout=po_…` filters on (Stripe puts no `payout` field on the
//! transaction). The payout's own `type: payout` transaction is covered by it too, so the list
//! shows it, as Stripe's does. Manual payouts (`POST /v1/payouts`) draw on the available balance;
//! Stripe cannot say which transactions they carried (`reconciliation_status: not_applicable`),
//! and their own transaction is swept, like any other, into the next automatic payout.
//! A failed or canceled payout returns its amount through a `payout_failure` / `payout_cancel`
//! transaction, which the next automatic payout covers.

use std::collections::BTreeMap;

use mlc_core::Currency;
use serde_json::{Value, json};

use crate::api::{Ctx, Out, R, list_kind};
use crate::error::ApiError;
use crate::events::{emit, range_matches};
use crate::params::{self, allow, s};
use crate::payments::convert;
use crate::state::Db;

/// Statuses a payout can have.
const STATUSES: &[&str] = &["paid", "pending", "in_transit", "canceled", "failed"];

/// Stripe's payout failure codes and the messages it gives with them.
const FAILURES: &[(&str, &str)] = &[
    ("account_closed", "The bank account has been closed."),
    ("account_frozen", "The bank account has been frozen."),
    (
        "bank_account_restricted",
        "The bank account has restrictions on either the type, or the number, of payouts allowed. This normally indicates that the bank account is a savings or other non-checking account.",
    ),
    (
        "bank_ownership_changed",
        "The destination bank account is no longer valid because its branch has changed ownership.",
    ),
    (
        "could_not_process",
        "The bank could not process this payout.",
    ),
    (
        "debit_not_authorized",
        "Debit transactions are not approved on the bank account. (Stripe requires bank accounts to be set up for both credit and debit payouts.)",
    ),
    (
        "declined",
        "The bank has declined this transfer. Please contact the bank before retrying.",
    ),
    (
        "incorrect_account_holder_address",
        "Your bank notified us that the bank account holder address on file is incorrect.",
    ),
    (
        "incorrect_account_holder_name",
        "Your bank notified us that the bank account holder name on file is incorrect.",
    ),
    (
        "incorrect_account_holder_tax_id",
        "Your bank notified us that the bank account holder tax ID on file is incorrect.",
    ),
    (
        "insufficient_funds",
        "Your Stripe account has insufficient funds to cover the payout.",
    ),
    (
        "invalid_account_number",
        "The routing number seems correct, but the account number is invalid.",
    ),
    (
        "invalid_currency",
        "The bank was unable to process this payout because of its currency. This is probably because the bank account cannot accept payments in that currency.",
    ),
    (
        "no_account",
        "The bank account details on file are probably incorrect. No bank account could be located with those details.",
    ),
    (
        "unsupported_card",
        "The bank no longer supports payouts to this card.",
    ),
];

/// Source types a payout may draw on (the simulator's balance is all `card`).
const SOURCE_TYPES: &[&str] = &["card", "bank_account", "fpx"];

/// Minimum instant payout fee, in USD cents (converted for other currencies).
const INSTANT_MIN_FEE_USD_CENTS: i64 = 50;

/// The simulated account's bank account for a currency (`ba_1SimBankAcctUSD000000000`).
pub(crate) fn bank_account_id(cur: &str) -> String {
    format!("ba_{:0<24}", format!("1SimBankAcct{}", cur.to_uppercase()))
}

/// Creates the bank account object for a currency on first use (so `expand[]=destination`
/// works). Inserting it draws no id, so the id sequence is unchanged.
fn ensure_bank_account(db: &mut Db, cur: &str) -> String {
    let id = bank_account_id(cur);
    if db.get_kind("bank_account", &id).is_none() {
        let account = db.account_id.clone();
        db.insert("bank_account", &id, json!({
            "id": id, "object": "bank_account", "account": account,
            "account_holder_name": "Simulated SaaS Inc.", "account_holder_type": "company",
            "account_type": null, "available_payout_methods": ["standard", "instant"],
            "bank_name": "STRIPE TEST BANK", "country": "US", "currency": cur,
            "default_for_currency": true, "fingerprint": format!("SimBank{}Fp0001", cur.to_uppercase()),
            "last4": "6789", "metadata": {}, "routing_number": "110000000", "status": "new",
        }));
    }
    id
}

/// The instant payout fee: 1% of the amount, at least 0.50 USD (converted).
pub(crate) fn instant_fee(amount: i64, cur: Currency) -> i64 {
    let pct = (i128::from(amount) + 50) / 100;
    let min = convert(INSTANT_MIN_FEE_USD_CENTS, Currency::USD, cur).0;
    let fee = (pct as i64).max(min);
    let step = cur.amount_step();
    (fee + step - 1) / step * step
}

/// Time passing: pending balance transactions whose `available_on` has come become available.
fn mature(db: &mut Db) {
    let now = db.now();
    for st in db.objects.values_mut() {
        if st.kind == "balance_transaction"
            && !st.deleted
            && st.v["status"] == "pending"
            && st.v["available_on"].as_i64().is_some_and(|t| t <= now)
        {
            st.v["status"] = json!("available");
        }
    }
}

/// Available and pending balance per settlement currency (sum of `net` by status).
fn balances(db: &Db) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for id in db.ids_of("balance_transaction") {
        let Some(t) = db.get_kind("balance_transaction", &id) else {
            continue;
        };
        let cur = t["currency"].as_str().unwrap_or("usd").to_string();
        let net = t["net"].as_i64().unwrap_or(0);
        let e = out.entry(cur).or_default();
        if t["status"] == "available" {
            e.0 += net;
        } else {
            e.1 += net;
        }
    }
    out
}

/// `GET /v1/balance`.
pub(crate) fn balance(db: &mut Db, ctx: &Ctx, p: &Value) -> R {
    allow(p, &[])?;
    mature(db);
    let mut b = balances(db);
    b.entry(ctx.account_currency.as_str().to_string())
        .or_default();
    let side = |pick: fn(&(i64, i64)) -> i64| -> Vec<Value> {
        b.iter()
            .map(|(c, x)| json!({"amount": pick(x), "currency": c, "source_types": {"card": pick(x)}}))
            .collect()
    };
    Ok(Out::Raw(json!({
        "object": "balance",
        "available": side(|x| x.0),
        "livemode": ctx.livemode,
        "pending": side(|x| x.1),
    })))
}

/// A balance transaction of a payout (`payout`, `payout_failure`, `payout_cancel`); available
/// at once. `covered_by` links it to an automatic payout's `?payout=` list.
#[allow(clippy::too_many_arguments)]
fn payout_txn(
    db: &mut Db,
    ty: &str,
    category: &str,
    po_id: &str,
    amount: i64,
    fee: i64,
    cur: &str,
    description: &str,
    covered_by: Option<&str>,
) -> String {
    let id = db.new_id("txn");
    let now = db.now();
    let fee_details = if fee == 0 {
        json!([])
    } else {
        json!([{"amount": fee, "application": null, "currency": cur, "description": "Instant Payout fee", "type": "stripe_fee"}])
    };
    let mut v = json!({
        "id": id, "object": "balance_transaction", "amount": amount, "available_on": now,
        "balance_type": "payments", "created": now, "currency": cur, "description": description,
        "exchange_rate": null, "fee": fee, "fee_details": fee_details, "net": amount - fee,
        "reporting_category": category, "source": po_id, "status": "available", "type": ty,
    });
    if let Some(po) = covered_by {
        v["_payout"] = json!(po);
    }
    db.insert("balance_transaction", &id, v);
    id
}

#[allow(clippy::too_many_arguments)]
fn payout_object(
    ctx: &Ctx,
    id: &str,
    amount: i64,
    cur: &str,
    now: i64,
    arrival: i64,
    automatic: bool,
    txn: &str,
    destination: &str,
    method: &str,
    description: Value,
    statement_descriptor: Value,
    metadata: Value,
) -> Value {
    json!({
        "id": id, "object": "payout", "amount": amount, "application_fee": null,
        "application_fee_amount": null, "arrival_date": arrival, "automatic": automatic,
        "balance_transaction": txn, "created": now, "currency": cur, "description": description,
        "destination": destination, "failure_balance_transaction": null, "failure_code": null,
        "failure_message": null, "livemode": ctx.livemode, "metadata": metadata, "method": method,
        "original_payout": null, "payout_method": null,
        "reconciliation_status": if automatic { "in_progress" } else { "not_applicable" },
        "reversed_by": null, "source_type": "card", "statement_descriptor": statement_descriptor,
        "status": "pending", "trace_id": {"status": "pending", "value": null}, "type": "bank_account",
    })
}

/// `POST /_sim/payouts/run` (`currency`, `arrival_in_days` default 2): Stripe's automatic
/// payouts. Per settlement currency, every balance transaction not yet paid out is covered by
/// one payout of the sum of their `net` (they become `available`); a sum ≤ 0 pays nothing and
/// leaves them for the next run. Returns the list of payouts made.
pub(crate) fn run(db: &mut Db, ctx: &Ctx, p: &Value) -> R {
    allow(p, &["currency", "arrival_in_days"])?;
    let only = params::currency(p, "currency")?;
    let days = params::int(p, "arrival_in_days")?.unwrap_or(2);
    if !(0..=30).contains(&days) {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            "arrival_in_days must be between 0 and 30.",
            Some("arrival_in_days"),
        ));
    }
    mature(db);
    let mut ids = db.ids_of("balance_transaction");
    ids.reverse(); // oldest first
    let mut by_cur: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in ids {
        let Some(t) = db.get_kind("balance_transaction", &id) else {
            continue;
        };
        if t.get("_payout").is_some_and(|x| !x.is_null()) {
            continue;
        }
        let cur = t["currency"].as_str().unwrap_or("usd").to_string();
        if only.is_some_and(|c| c.as_str() != cur) {
            continue;
        }
        by_cur.entry(cur).or_default().push(id);
    }
    let mut made = Vec::new();
    for (cur, covered) in by_cur {
        let amount: i64 = covered
            .iter()
            .filter_map(|id| db.get_kind("balance_transaction", id))
            .map(|t| t["net"].as_i64().unwrap_or(0))
            .sum();
        if amount <= 0 {
            continue; // Stripe does not pay out a negative (or empty) balance.
        }
        let po_id = db.new_id("po");
        let now = db.now();
        for id in &covered {
            if let Some(t) = db.get_kind_mut("balance_transaction", id) {
                t["_payout"] = json!(po_id);
                t["status"] = json!("available");
                if t["available_on"].as_i64().is_some_and(|a| a > now) {
                    t["available_on"] = json!(now);
                }
            }
        }
        let txn = payout_txn(
            db,
            "payout",
            "payout",
            &po_id,
            -amount,
            0,
            &cur,
            "STRIPE PAYOUT",
            Some(&po_id),
        );
        let destination = ensure_bank_account(db, &cur);
        let v = payout_object(
            ctx,
            &po_id,
            amount,
            &cur,
            now,
            now + days * 86_400,
            true,
            &txn,
            &destination,
            "standard",
            json!("STRIPE PAYOUT"),
            Value::Null,
            json!({}),
        );
        db.insert("payout", &po_id, v);
        emit(db, ctx, "payout.created", &po_id, None);
        made.push(po_id);
    }
    made.reverse(); // newest first, as lists are
    Ok(Out::List {
        url: "/_sim/payouts/run".into(),
        ids: made,
        has_more: false,
    })
}

fn get_payout(db: &Db, id: &str) -> Result<Value, ApiError> {
    db.get_kind("payout", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("payout", id))
}

fn store(db: &mut Db, id: &str, v: Value) {
    if let Some(x) = db.get_kind_mut("payout", id) {
        *x = v;
    }
}

/// `POST /_sim/payouts/{id}/paid`: the bank received it (`payout.paid`); an automatic payout's
/// reconciliation then completes (`payout.reconciliation_completed`).
pub(crate) fn mark_paid(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &[])?;
    let old = get_payout(db, id)?;
    let status = old["status"].as_str().unwrap_or("").to_string();
    if status != "pending" && status != "in_transit" {
        return Err(ApiError::invalid_nocode(
            format!(
                "Payout {id} cannot be paid because its status is {status}; only a pending or in_transit payout can."
            ),
            None,
        ));
    }
    let mut v = old;
    v["status"] = json!("paid");
    let trace: String = id.chars().rev().take(15).collect();
    v["trace_id"] = json!({"status": "supported", "value": format!("SIM{}", trace.to_uppercase())});
    store(db, id, v.clone());
    emit(db, ctx, "payout.paid", id, None);
    if v["automatic"] == json!(true) {
        v["reconciliation_status"] = json!("completed");
        store(db, id, v);
        emit(db, ctx, "payout.reconciliation_completed", id, None);
    }
    Ok(Out::Obj(id.to_string()))
}

/// `POST /_sim/payouts/{id}/fail` (`failure_code`, default `account_closed`): the bank returns
/// a pending, in-transit or paid payout. Its amount comes back to the balance as a
/// `payout_failure` transaction (`failure_balance_transaction`), covered by the next automatic
/// payout; events `payout.failed`, `payout.updated`.
pub(crate) fn fail(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &["failure_code"])?;
    let code = s(p, "failure_code").unwrap_or("account_closed");
    let Some((code, message)) = FAILURES.iter().find(|(c, _)| *c == code) else {
        let names: Vec<&str> = FAILURES.iter().map(|(c, _)| *c).collect();
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            format!("Invalid failure_code: must be one of {}", names.join(", ")),
            Some("failure_code"),
        ));
    };
    let old = get_payout(db, id)?;
    let status = old["status"].as_str().unwrap_or("").to_string();
    if !["pending", "in_transit", "paid"].contains(&status.as_str()) {
        return Err(ApiError::invalid_nocode(
            format!(
                "Payout {id} cannot fail because its status is {status}; only a pending, in_transit or paid payout can."
            ),
            None,
        ));
    }
    let txn = reversal_txn(db, &old, "payout_failure", "PAYOUT FAILURE");
    let mut v = old.clone();
    v["status"] = json!("failed");
    v["failure_code"] = json!(code);
    v["failure_message"] = json!(message);
    v["failure_balance_transaction"] = json!(txn);
    store(db, id, v);
    emit(db, ctx, "payout.failed", id, None);
    emit(db, ctx, "payout.updated", id, Some(old));
    Ok(Out::Obj(id.to_string()))
}

/// The transaction returning a failed or canceled payout's amount (and any instant fee).
fn reversal_txn(db: &mut Db, po: &Value, ty: &str, description: &str) -> String {
    let own = po["balance_transaction"]
        .as_str()
        .and_then(|t| db.get_kind("balance_transaction", t))
        .cloned()
        .unwrap_or(Value::Null);
    let fee = -own["fee"].as_i64().unwrap_or(0);
    let amount = po["amount"].as_i64().unwrap_or(0);
    let cur = po["currency"].as_str().unwrap_or("usd").to_string();
    let id = po["id"].as_str().unwrap_or("").to_string();
    let txn = payout_txn(
        db,
        ty,
        "payout_reversal",
        &id,
        amount,
        fee,
        &cur,
        description,
        None,
    );
    if fee != 0
        && let Some(t) = db.get_kind_mut("balance_transaction", &txn)
    {
        t["fee_details"][0]["description"] = json!("Instant Payout fee refund");
    }
    txn
}

/// The automatic payout a `?payout=` balance transaction filter names (400 when unknown or
/// manual, as Stripe refuses).
pub(crate) fn filter_target(db: &Db, po: &str) -> Result<String, ApiError> {
    let v = db
        .get_kind("payout", po)
        .ok_or_else(|| ApiError::missing_ref("payout", po, "payout"))?;
    if v["automatic"] != json!(true) {
        return Err(ApiError::invalid_nocode(
            "Balance transaction history can only be filtered on automatic transfers, not manual.",
            Some("payout"),
        ));
    }
    Ok(po.to_string())
}

fn insufficient() -> ApiError {
    ApiError::invalid(
        "balance_insufficient",
        "You have insufficient funds in your Stripe account for this transfer. Your card balance is too low. You can use the /v1/balance endpoint to view your Stripe balance (for more details, see stripe.com/docs/api#balance).",
        None,
    )
}

/// `POST /v1/payouts`: a manual payout from the available balance.
fn create(db: &mut Db, ctx: &Ctx, p: &Value) -> R {
    allow(
        p,
        &[
            "amount",
            "currency",
            "description",
            "destination",
            "metadata",
            "method",
            "source_type",
            "statement_descriptor",
        ],
    )?;
    let amount = params::req_int(p, "amount")?;
    let cur = params::currency_of(params::req_s(p, "currency")?, "currency")?;
    params::check_amount(amount, cur, "amount", false)?;
    let method = s(p, "method").unwrap_or("standard");
    if method != "standard" && method != "instant" {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid method: must be one of standard or instant",
            Some("method"),
        ));
    }
    let source_type = s(p, "source_type").unwrap_or("card");
    if !SOURCE_TYPES.contains(&source_type) {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid source_type: must be one of bank_account, card, or fpx",
            Some("source_type"),
        ));
    }
    let descriptor = s(p, "statement_descriptor");
    if descriptor.is_some_and(|d| d.chars().count() > 22) {
        return Err(ApiError::invalid_nocode(
            "The statement descriptor must be at most 22 characters.",
            Some("statement_descriptor"),
        ));
    }
    let bank = bank_account_id(cur.as_str());
    if let Some(d) = s(p, "destination")
        && d != bank
    {
        return Err(ApiError::missing_ref("external account", d, "destination"));
    }
    let metadata = params::metadata(p)?;
    let fee = if method == "instant" {
        instant_fee(amount, cur)
    } else {
        0
    };
    mature(db);
    let available = if source_type == "card" {
        balances(db).get(cur.as_str()).map(|x| x.0).unwrap_or(0)
    } else {
        0
    };
    if available < amount + fee {
        return Err(insufficient());
    }
    let po_id = db.new_id("po");
    let now = db.now();
    let txn = payout_txn(
        db,
        "payout",
        "payout",
        &po_id,
        -amount,
        fee,
        cur.as_str(),
        s(p, "description").unwrap_or("STRIPE PAYOUT"),
        None,
    );
    let destination = ensure_bank_account(db, cur.as_str());
    let arrival = if method == "instant" {
        now
    } else {
        now + 2 * 86_400
    };
    let v = payout_object(
        ctx,
        &po_id,
        amount,
        cur.as_str(),
        now,
        arrival,
        false,
        &txn,
        &destination,
        method,
        json!(s(p, "description")),
        json!(descriptor),
        Value::Object(metadata),
    );
    db.insert("payout", &po_id, v);
    emit(db, ctx, "payout.created", &po_id, None);
    Ok(Out::Obj(po_id))
}

/// `/v1/payouts` routes.
pub(crate) fn payouts(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => create(db, ctx, p),
        ("GET", []) => {
            allow(
                p,
                &[
                    "arrival_date",
                    "created",
                    "destination",
                    "ending_before",
                    "limit",
                    "starting_after",
                    "status",
                ],
            )?;
            let status = s(p, "status").map(str::to_string);
            if let Some(st) = &status
                && !STATUSES.contains(&st.as_str())
            {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid status: must be one of pending, paid, failed, or canceled",
                    Some("status"),
                ));
            }
            let destination = s(p, "destination").map(str::to_string);
            list_kind(db, "payout", "/v1/payouts", p, |v| {
                Ok(status.as_ref().is_none_or(|x| v["status"] == json!(x))
                    && destination
                        .as_ref()
                        .is_none_or(|x| v["destination"] == json!(x))
                    && range_matches(p, "arrival_date", v["arrival_date"].as_i64().unwrap_or(0))?)
            })
        }
        ("GET", [id]) => {
            get_payout(db, id)?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(p, &["metadata"])?;
            let old = get_payout(db, id)?;
            let mut v = old.clone();
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                store(db, id, v);
                emit(db, ctx, "payout.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "cancel"]) => {
            allow(p, &[])?;
            let old = get_payout(db, id)?;
            if old["automatic"] == json!(true) {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "Payout {id} is an automatic payout; you may not cancel automatic Stripe payouts."
                    ),
                    None,
                ));
            }
            let status = old["status"].as_str().unwrap_or("").to_string();
            if status != "pending" {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "Payout {id} cannot be canceled because its status is {status}; only a pending payout can be canceled."
                    ),
                    None,
                ));
            }
            let txn = reversal_txn(db, &old, "payout_cancel", "PAYOUT CANCEL");
            let mut v = old;
            v["status"] = json!("canceled");
            v["failure_balance_transaction"] = json!(txn);
            store(db, id, v);
            emit(db, ctx, "payout.canceled", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/payouts/{}", segs.join("/")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_account_ids_look_like_stripe_ids() {
        let id = bank_account_id("usd");
        assert_eq!(id, "ba_1SimBankAcctUSD000000000");
        assert_eq!(id.len(), 3 + 24);
    }

    #[test]
    fn instant_fee_is_one_percent_with_a_minimum() {
        assert_eq!(instant_fee(100_000, Currency::USD), 1_000);
        assert_eq!(instant_fee(1_000, Currency::USD), 50);
        // 0.50 USD at 1.08 USD per EUR.
        assert_eq!(instant_fee(1_000, Currency::EUR), 46);
        // Three-decimal currencies round up to a multiple of ten.
        assert_eq!(instant_fee(1_000_000, Currency::KWD) % 10, 0);
    }
}
