//! Disputes: the cardholder's bank opens one on a charge (`POST /_sim/charges/{id}/dispute`), the
//! merchant answers through the API (evidence, metadata, close), and the bank decides
//! (`POST /_sim/disputes/{id}/resolve`). A chargeback withdraws the disputed amount plus the
//! dispute fee at once as an `adjustment` balance transaction; winning reinstates the amount
//! (and the fee when the network returns it). An inquiry moves no money.

use mlc_core::Currency;
use serde_json::{Map, Value, json};

use crate::api::{Ctx, Out, R};
use crate::error::ApiError;
use crate::events::emit;
use crate::params::{self, allow, s};
use crate::payments::convert;
use crate::state::Db;

/// Reasons a cardholder's bank gives (Stripe's list).
const REASONS: &[&str] = &[
    "bank_cannot_process",
    "check_returned",
    "credit_not_processed",
    "customer_initiated",
    "debit_not_authorized",
    "duplicate",
    "fraudulent",
    "general",
    "incorrect_account_details",
    "insufficient_funds",
    "noncompliant",
    "product_not_received",
    "product_unacceptable",
    "subscription_canceled",
    "unrecognized",
];

/// Evidence fields that take text.
const TEXT_EVIDENCE: &[&str] = &[
    "access_activity_log",
    "billing_address",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_tracking_number",
    "uncategorized_text",
];

/// Evidence fields that take a File upload id (`file_…`).
const FILE_EVIDENCE: &[&str] = &[
    "cancellation_policy",
    "customer_communication",
    "customer_signature",
    "duplicate_charge_documentation",
    "receipt",
    "refund_policy",
    "service_documentation",
    "shipping_documentation",
    "uncategorized_file",
];

/// Stripe's combined limit on the characters of all evidence fields.
const EVIDENCE_CHAR_LIMIT: usize = 150_000;

/// The dispute fee in USD cents; other settlement currencies get it converted at the
/// simulator's fixed rates.
const DISPUTE_FEE_USD_CENTS: i64 = 1500;

/// Statuses after which nothing changes any more.
const CLOSED: &[&str] = &["won", "lost", "warning_closed", "prevented"];

fn is_inquiry(status: &str) -> bool {
    status.starts_with("warning_")
}

/// The dispute fee in the settlement currency.
pub(crate) fn dispute_fee(settle: Currency) -> i64 {
    convert(DISPUTE_FEE_USD_CENTS, Currency::USD, settle).0
}

/// The network's reason code for a Stripe reason (Visa, Mastercard and Amex codes).
fn network_reason_code(brand: &str, reason: &str) -> &'static str {
    match (brand, reason) {
        ("mastercard", "fraudulent") => "4837",
        ("mastercard", "duplicate") => "4834",
        ("mastercard", _) => "4853",
        ("amex", "fraudulent") => "F29",
        ("amex", "duplicate") => "P08",
        ("amex", _) => "C08",
        (_, "fraudulent") => "10.4",
        (_, "duplicate") => "12.6.1",
        (_, "product_not_received") => "13.1",
        (_, "subscription_canceled") => "13.2",
        (_, "product_unacceptable") => "13.3",
        (_, "credit_not_processed") => "13.6",
        _ => "13.7",
    }
}

fn empty_evidence() -> Value {
    let mut m = Map::new();
    for k in TEXT_EVIDENCE.iter().chain(FILE_EVIDENCE) {
        m.insert((*k).to_string(), Value::Null);
    }
    m.insert("enhanced_evidence".into(), json!({}));
    Value::Object(m)
}

fn already_closed(id: &str, status: &str) -> ApiError {
    ApiError::invalid_nocode(
        format!(
            "This dispute ({id}) is already closed with status {status}; it cannot be changed."
        ),
        None,
    )
}

/// Why Stripe refuses to refund this charge because of a dispute (a chargeback of any status;
/// an inquiry leaves the charge refundable).
pub(crate) fn refund_refusal(db: &Db, charge: &Value) -> Option<ApiError> {
    let dp = charge["_dispute"].as_str()?;
    let dispute = db.get_kind("dispute", dp)?;
    if is_inquiry(dispute["status"].as_str().unwrap_or("")) {
        return None;
    }
    Some(ApiError::invalid(
        "charge_disputed",
        format!(
            "Charge {} has been charged back; cannot issue a refund.",
            charge["id"].as_str().unwrap_or("")
        ),
        None,
    ))
}

/// Inserts an `adjustment` balance transaction for a dispute.
#[allow(clippy::too_many_arguments)]
fn adjustment(
    db: &mut Db,
    dp_id: &str,
    category: &str,
    description: String,
    amount: i64,
    rate: &Value,
    fee: i64,
    settle: &str,
) -> String {
    let id = db.new_id("txn");
    let now = db.now();
    let fee_details = if fee == 0 {
        json!([])
    } else {
        json!([{"amount": fee, "application": null, "currency": settle, "description": "Dispute fee", "type": "stripe_fee"}])
    };
    db.insert("balance_transaction", &id, json!({
        "id": id, "object": "balance_transaction", "amount": amount, "available_on": now + 2 * 86_400,
        "balance_type": "payments", "created": now, "currency": settle, "description": description,
        "exchange_rate": rate, "fee": fee, "fee_details": fee_details, "net": amount - fee,
        "reporting_category": category, "source": dp_id, "status": "pending", "type": "adjustment",
    }));
    id
}

/// `POST /_sim/charges/{id}/dispute`: the cardholder's bank disputes a succeeded charge.
/// `reason` (default `general`), `amount` (default what was captured and not refunded),
/// `inquiry` (default false: a chargeback, whose funds are withdrawn at once).
pub(crate) fn open(db: &mut Db, ctx: &Ctx, ch_id: &str, p: &Value) -> R {
    allow(p, &["reason", "amount", "inquiry"])?;
    let charge = db
        .get_kind("charge", ch_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("charge", ch_id))?;
    if charge["status"] != "succeeded" {
        return Err(ApiError::invalid_nocode(
            format!(
                "Charge {ch_id} has status {}; only a succeeded charge can be disputed.",
                charge["status"].as_str().unwrap_or("")
            ),
            None,
        ));
    }
    if charge["disputed"] == json!(true) {
        return Err(ApiError::invalid(
            "charge_disputed",
            format!(
                "Charge {ch_id} has already been disputed ({}).",
                charge["_dispute"].as_str().unwrap_or("")
            ),
            None,
        ));
    }
    let reason = s(p, "reason").unwrap_or("general");
    if !REASONS.contains(&reason) {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            format!("Invalid reason: must be one of {}", REASONS.join(", ")),
            Some("reason"),
        ));
    }
    let inquiry = params::boolean(p, "inquiry")?.unwrap_or(false);
    let cur = charge["currency"]
        .as_str()
        .and_then(|c| Currency::parse(c).ok())
        .unwrap_or(Currency::USD);
    let disputable = charge["amount_captured"].as_i64().unwrap_or(0)
        - charge["amount_refunded"].as_i64().unwrap_or(0);
    if disputable <= 0 {
        return Err(ApiError::invalid(
            "charge_already_refunded",
            format!("Charge {ch_id} has been refunded in full; there is nothing to dispute."),
            None,
        ));
    }
    let amount = params::int(p, "amount")?.unwrap_or(disputable);
    params::check_amount(amount, cur, "amount", false)?;
    if amount > disputable {
        return Err(ApiError::invalid(
            "amount_too_large",
            format!(
                "Dispute amount ({amount}) is greater than the captured and unrefunded amount on the charge ({disputable})."
            ),
            Some("amount"),
        ));
    }

    let dp_id = db.new_id("dp");
    let now = db.now();
    let settle = ctx.account_currency;
    let mut txns = Vec::new();
    if !inquiry {
        // Converted at the rate of the day, as Stripe does (the simulator's rates are fixed).
        let (settled, rate) = convert(amount, cur, settle);
        txns.push(adjustment(
            db,
            &dp_id,
            "dispute",
            format!("Chargeback withdrawal for {ch_id}"),
            -settled,
            &json!(rate),
            dispute_fee(settle),
            settle.as_str(),
        ));
    }
    let card = &charge["payment_method_details"]["card"];
    let brand = card["brand"].as_str().unwrap_or("visa");
    // Evidence is due by the end of the day a week from now.
    let due_by = (now / 86_400 + 8) * 86_400 - 1;
    db.insert("dispute", &dp_id, json!({
        "id": dp_id, "object": "dispute", "amount": amount, "balance_transactions": txns,
        "charge": ch_id, "created": now, "currency": cur.as_str(), "enhanced_eligibility_types": [],
        "evidence": empty_evidence(),
        "evidence_details": {"due_by": due_by, "enhanced_eligibility": {}, "has_evidence": false, "past_due": false, "submission_count": 0},
        "is_charge_refundable": inquiry, "livemode": ctx.livemode, "metadata": {},
        "payment_intent": charge["payment_intent"],
        "payment_method_details": {"card": {
            "brand": brand, "case_type": if inquiry { "inquiry" } else { "chargeback" },
            "network": card["network"].as_str().unwrap_or(brand),
            "network_reason_code": network_reason_code(brand, reason),
        }, "type": "card"},
        "reason": reason, "status": if inquiry { "warning_needs_response" } else { "needs_response" },
    }));
    if let Some(ch) = db.get_kind_mut("charge", ch_id) {
        ch["disputed"] = json!(true);
        ch["_dispute"] = json!(dp_id);
    }
    emit(db, ctx, "charge.dispute.created", &dp_id, None);
    if !inquiry {
        emit(db, ctx, "charge.dispute.funds_withdrawn", &dp_id, None);
    }
    Ok(Out::Obj(dp_id))
}

/// `POST /_sim/disputes/{id}/resolve`: the bank decides. `outcome` `won` reinstates the
/// withdrawn amount (and the fee when `fee_returned`); `lost` keeps it withdrawn. An inquiry
/// closes as `warning_closed` either way, moving no money.
pub(crate) fn resolve(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &["outcome", "fee_returned"])?;
    let outcome = params::req_s(p, "outcome")?;
    if outcome != "won" && outcome != "lost" {
        return Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid outcome: must be one of won or lost",
            Some("outcome"),
        ));
    }
    let fee_returned = params::boolean(p, "fee_returned")?.unwrap_or(false);
    let old = db
        .get_kind("dispute", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("dispute", id))?;
    let status = old["status"].as_str().unwrap_or("").to_string();
    if CLOSED.contains(&status.as_str()) {
        return Err(already_closed(id, &status));
    }
    let mut v = old.clone();
    if is_inquiry(&status) {
        v["status"] = json!("warning_closed");
        if let Some(x) = db.get_kind_mut("dispute", id) {
            *x = v;
        }
        emit(db, ctx, "charge.dispute.closed", id, None);
        return Ok(Out::Obj(id.to_string()));
    }
    if outcome == "lost" {
        v["status"] = json!("lost");
        if let Some(x) = db.get_kind_mut("dispute", id) {
            *x = v;
        }
        emit(db, ctx, "charge.dispute.closed", id, None);
        return Ok(Out::Obj(id.to_string()));
    }
    let withdrawal = v["balance_transactions"][0]
        .as_str()
        .and_then(|t| db.get_kind("balance_transaction", t))
        .cloned()
        .unwrap_or(Value::Null);
    let reinstated = -withdrawal["amount"].as_i64().unwrap_or(0);
    let fee = if fee_returned {
        -withdrawal["fee"].as_i64().unwrap_or(0)
    } else {
        0
    };
    let settle = withdrawal["currency"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| ctx.account_currency.as_str().to_string());
    let ch_id = v["charge"].as_str().unwrap_or("").to_string();
    let txn = adjustment(
        db,
        id,
        "dispute_reversal",
        format!("Chargeback reversal for {ch_id}"),
        reinstated,
        &withdrawal["exchange_rate"],
        fee,
        &settle,
    );
    if let Some(a) = v["balance_transactions"].as_array_mut() {
        a.push(json!(txn));
    }
    v["status"] = json!("won");
    if let Some(x) = db.get_kind_mut("dispute", id) {
        *x = v;
    }
    emit(db, ctx, "charge.dispute.funds_reinstated", id, None);
    emit(db, ctx, "charge.dispute.closed", id, None);
    Ok(Out::Obj(id.to_string()))
}

/// Applies `evidence[...]` to a dispute's evidence; returns whether any field was given.
fn apply_evidence(v: &mut Value, p: &Value) -> Result<bool, ApiError> {
    let given = match p.get("evidence") {
        None => return Ok(false),
        Some(Value::String(x)) if x.is_empty() => return Ok(false),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::invalid(
                "parameter_invalid_string",
                "Invalid hash",
                Some("evidence"),
            ));
        }
    };
    for (k, x) in given {
        let name = format!("evidence[{k}]");
        if k == "enhanced_evidence" {
            return Err(ApiError::invalid_nocode(
                "The simulator does not support evidence[enhanced_evidence].",
                Some(&name),
            ));
        }
        let text = x.as_str().ok_or_else(|| {
            ApiError::invalid(
                "parameter_invalid_string",
                format!("Invalid string: {name}"),
                Some(&name),
            )
        })?;
        if TEXT_EVIDENCE.contains(&k.as_str()) {
            v["evidence"][k] = if text.is_empty() {
                Value::Null
            } else {
                json!(text)
            };
        } else if FILE_EVIDENCE.contains(&k.as_str()) {
            if !text.is_empty() {
                // The simulator has no File uploads, so no `file_…` id can exist.
                return Err(ApiError::missing_ref("file upload", text, &name));
            }
            v["evidence"][k] = Value::Null;
        } else {
            return Err(ApiError::unknown_param(&name));
        }
    }
    let chars: usize = v["evidence"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .map(|t| t.chars().count())
                .sum()
        })
        .unwrap_or(0);
    if chars > EVIDENCE_CHAR_LIMIT {
        return Err(ApiError::invalid_nocode(
            format!(
                "The combined character count of all evidence fields is limited to 150,000 (got {chars})."
            ),
            Some("evidence"),
        ));
    }
    Ok(true)
}

/// `/v1/disputes` routes.
pub(crate) fn disputes(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("GET", []) => crate::payments::list_by_charge(db, "dispute", "/v1/disputes", p),
        ("GET", [id]) => {
            db.get_kind("dispute", id)
                .ok_or_else(|| ApiError::not_found("dispute", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(p, &["evidence", "metadata", "submit"])?;
            let old = db
                .get_kind("dispute", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("dispute", id))?;
            let status = old["status"].as_str().unwrap_or("").to_string();
            let submit = params::boolean(p, "submit")?;
            let mut v = old.clone();
            let evidence_given = apply_evidence(&mut v, p)?;
            // Updating any evidence field submits all of it unless `submit=false`.
            let submitting = submit == Some(true) || (evidence_given && submit != Some(false));
            if evidence_given || submitting {
                if CLOSED.contains(&status.as_str()) {
                    return Err(already_closed(id, &status));
                }
                if status == "under_review" || status == "warning_under_review" {
                    return Err(ApiError::invalid_nocode(
                        format!(
                            "This dispute ({id}) is under review: its evidence has been submitted and can no longer be changed."
                        ),
                        None,
                    ));
                }
            }
            let has_evidence = v["evidence"]
                .as_object()
                .is_some_and(|m| m.values().any(Value::is_string));
            v["evidence_details"]["has_evidence"] = json!(has_evidence);
            if submitting {
                let now = db.now();
                let count = v["evidence_details"]["submission_count"]
                    .as_i64()
                    .unwrap_or(0);
                v["evidence_details"]["submission_count"] = json!(count + 1);
                v["evidence_details"]["past_due"] =
                    json!(now > v["evidence_details"]["due_by"].as_i64().unwrap_or(i64::MAX));
                v["status"] = json!(if is_inquiry(&status) {
                    "warning_under_review"
                } else {
                    "under_review"
                });
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                if let Some(x) = db.get_kind_mut("dispute", id) {
                    *x = v;
                }
                emit(db, ctx, "charge.dispute.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "close"]) => {
            allow(p, &[])?;
            let old = db
                .get_kind("dispute", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("dispute", id))?;
            let status = old["status"].as_str().unwrap_or("").to_string();
            if CLOSED.contains(&status.as_str()) {
                return Err(already_closed(id, &status));
            }
            let mut v = old;
            if is_inquiry(&status) {
                v["status"] = json!("warning_closed");
            } else {
                v["status"] = json!("lost");
                v["is_charge_refundable"] = json!(false);
            }
            if let Some(x) = db.get_kind_mut("dispute", id) {
                *x = v;
            }
            emit(db, ctx, "charge.dispute.closed", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/disputes/{}", segs.join("/")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispute_fee_converts_from_usd() {
        assert_eq!(dispute_fee(Currency::USD), 1500);
        // 15.00 USD at 1.08 USD per EUR.
        assert_eq!(dispute_fee(Currency::EUR), 1389);
    }

    #[test]
    fn evidence_has_every_stripe_field() {
        let e = empty_evidence();
        let m = e.as_object().unwrap();
        assert_eq!(m.len(), TEXT_EVIDENCE.len() + FILE_EVIDENCE.len() + 1);
        assert!(m.values().filter(|v| v.is_null()).count() == m.len() - 1);
    }

    #[test]
    fn reason_codes_per_network() {
        assert_eq!(network_reason_code("visa", "fraudulent"), "10.4");
        assert_eq!(network_reason_code("mastercard", "fraudulent"), "4837");
        assert_eq!(network_reason_code("amex", "general"), "C08");
    }
}
