//! Payment methods (test tokens), PaymentIntents, Charges, BalanceTransactions and Refunds,
//! with Stripe-like fees and currency conversion into the account's settlement currency.

use mlc_core::Currency;
use serde_json::{Map, Value, json};

use crate::api::{Ctx, Out, R, list_kind, need_ref};
use crate::error::ApiError;
use crate::events::emit;
use crate::params::{self, allow, s};
use crate::render;
use crate::state::Db;

/// How a test card behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardBehavior {
    Succeeds,
    /// Declines when attached to a customer and when charged.
    DeclinesAlways(&'static str),
    /// Attaches fine; declines when charged.
    DeclinesOnCharge(&'static str),
}

struct TestCard {
    brand: &'static str,
    last4: &'static str,
    funding: &'static str,
    country: &'static str,
    behavior: CardBehavior,
}

fn test_card(token: &str) -> Option<TestCard> {
    let c = |brand, last4, behavior| TestCard {
        brand,
        last4,
        funding: "credit",
        country: "US",
        behavior,
    };
    Some(match token {
        "pm_card_visa" => c("visa", "4242", CardBehavior::Succeeds),
        "pm_card_visa_debit" => TestCard {
            funding: "debit",
            ..c("visa", "5556", CardBehavior::Succeeds)
        },
        "pm_card_mastercard" => c("mastercard", "4444", CardBehavior::Succeeds),
        "pm_card_amex" => c("amex", "8431", CardBehavior::Succeeds),
        "pm_card_jp" => TestCard {
            country: "JP",
            ..c("visa", "0003", CardBehavior::Succeeds)
        },
        "pm_card_de" => TestCard {
            country: "DE",
            ..c("visa", "3184", CardBehavior::Succeeds)
        },
        "pm_card_chargeDeclined" => c(
            "visa",
            "0002",
            CardBehavior::DeclinesAlways("generic_decline"),
        ),
        "pm_card_chargeDeclinedInsufficientFunds" => c(
            "visa",
            "9995",
            CardBehavior::DeclinesAlways("insufficient_funds"),
        ),
        "pm_card_chargeCustomerFail" => c(
            "visa",
            "0341",
            CardBehavior::DeclinesOnCharge("generic_decline"),
        ),
        _ => return None,
    })
}

fn decline_message(code: &str) -> &'static str {
    match code {
        "insufficient_funds" => "Your card has insufficient funds.",
        _ => "Your card was declined.",
    }
}

fn behavior_of(pm: &Value) -> CardBehavior {
    match pm["_behavior"].as_str() {
        Some("generic_decline_always") => CardBehavior::DeclinesAlways("generic_decline"),
        Some("insufficient_funds_always") => CardBehavior::DeclinesAlways("insufficient_funds"),
        Some(x) if x.ends_with("_on_charge") => CardBehavior::DeclinesOnCharge("generic_decline"),
        _ => CardBehavior::Succeeds,
    }
}

/// Resolves a payment method parameter: a test token creates a new `pm_…` (as Stripe does),
/// an existing id is used as is. `attach` applies the attach-time decline of some test cards.
pub(crate) fn resolve_pm(
    db: &mut Db,
    ctx: &Ctx,
    id: &str,
    param: &str,
    attach: bool,
) -> Result<String, ApiError> {
    if db.get_kind("payment_method", id).is_some() {
        return Ok(id.to_string());
    }
    let Some(card) = test_card(id) else {
        return Err(ApiError::missing_ref("PaymentMethod", id, param));
    };
    if let (true, CardBehavior::DeclinesAlways(code)) = (attach, card.behavior) {
        return Err(ApiError::card_declined(
            code,
            decline_message(code),
            Map::new(),
        ));
    }
    let pm_id = db.new_id("pm");
    let behavior = match card.behavior {
        CardBehavior::Succeeds => "succeeds".to_string(),
        CardBehavior::DeclinesAlways(c) => format!("{c}_always"),
        CardBehavior::DeclinesOnCharge(c) => format!("{c}_on_charge"),
    };
    let now = db.now();
    let year = 1970 + now / 31_557_600 + 3;
    let fingerprint: String = pm_id.chars().rev().take(16).collect();
    db.insert("payment_method", &pm_id, json!({
        "id": pm_id, "object": "payment_method", "allow_redisplay": "unspecified",
        "billing_details": {"address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null}, "email": null, "name": null, "phone": null, "tax_id": null},
        "card": {
            "brand": card.brand, "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "unchecked"},
            "country": card.country, "display_brand": card.brand, "exp_month": 12, "exp_year": year,
            "fingerprint": fingerprint, "funding": card.funding, "generated_from": null, "last4": card.last4,
            "networks": {"available": [card.brand], "preferred": null}, "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": true}, "wallet": null,
        },
        "created": now, "customer": null, "livemode": ctx.livemode, "metadata": {}, "type": "card",
        "_behavior": behavior,
    }));
    Ok(pm_id)
}

/// Fixed part of the processing fee, in the settlement currency's minor units.
fn fixed_fee(cur: Currency) -> i64 {
    match cur.as_str() {
        "usd" | "cad" | "aud" | "nzd" | "sgd" | "chf" => 30,
        "eur" => 25,
        "gbp" => 20,
        "jpy" => 30,
        "kwd" | "bhd" | "omr" | "jod" => 100,
        "sek" | "nok" | "dkk" => 180,
        _ => 30 * 10_i64.pow(cur.exponent()) / 100,
    }
}

/// Units of USD per one major unit, scaled by 10^6 (a fixed table; the sim has no FX market).
fn usd_per_unit_e6(cur: Currency) -> i64 {
    match cur.as_str() {
        "usd" => 1_000_000,
        "eur" => 1_080_000,
        "gbp" => 1_270_000,
        "jpy" => 6_700,
        "kwd" => 3_250_000,
        "bhd" => 2_650_000,
        "omr" => 2_600_000,
        "jod" => 1_410_000,
        "tnd" => 320_000,
        "cad" => 730_000,
        "aud" => 660_000,
        "chf" => 1_120_000,
        "sek" | "nok" => 95_000,
        "dkk" => 145_000,
        "krw" => 740,
        "inr" => 12_000,
        "mxn" => 58_000,
        "brl" => 200_000,
        _ => 1_000_000,
    }
}

fn round_div(n: i128, d: i128) -> i128 {
    // Half away from zero.
    if (n >= 0) == (d >= 0) {
        (n + d / 2) / d
    } else {
        (n - d / 2) / d
    }
}

/// Converts `amount` (minor units of `from`) to minor units of `to`, and the rate as shown.
pub(crate) fn convert(amount: i64, from: Currency, to: Currency) -> (i64, Option<f64>) {
    if from == to {
        return (amount, None);
    }
    let rate_e6 =
        i128::from(usd_per_unit_e6(from)) * 1_000_000 / i128::from(usd_per_unit_e6(to)).max(1);
    let num = i128::from(amount) * rate_e6 * 10_i128.pow(to.exponent());
    let den = 1_000_000 * 10_i128.pow(from.exponent());
    let mut out = round_div(num, den) as i64;
    let step = to.amount_step();
    out = round_div(i128::from(out), i128::from(step)) as i64 * step;
    // exchange_rate is shown as a JSON number like Stripe does (a ratio, not money).
    (out, Some(rate_e6 as f64 / 1_000_000.0))
}

/// Stripe-like fee on a settled amount: 2.9% + a fixed fee per settlement currency.
pub(crate) fn fee_for(settled: i64, cur: Currency) -> i64 {
    let pct = round_div(i128::from(settled) * 29, 1000) as i64;
    let fee = pct + fixed_fee(cur);
    let step = cur.amount_step();
    round_div(i128::from(fee), i128::from(step)) as i64 * step
}

#[allow(clippy::too_many_arguments)]
fn new_balance_txn(
    db: &mut Db,
    ty: &str,
    source: &str,
    amount: i64,
    cur: Currency,
    settle: Currency,
    description: Value,
    charge_fee: bool,
) -> String {
    let (settled, rate) = convert(amount, cur, settle);
    let fee = if charge_fee {
        fee_for(settled, settle)
    } else {
        0
    };
    let id = db.new_id("txn");
    let now = db.now();
    let fee_details = if fee > 0 {
        json!([{"amount": fee, "application": null, "currency": settle.as_str(), "description": "Stripe processing fees", "type": "stripe_fee"}])
    } else {
        json!([])
    };
    db.insert("balance_transaction", &id, json!({
        "id": id, "object": "balance_transaction", "amount": settled, "available_on": now + 2 * 86_400,
        "balance_type": "payments", "created": now, "currency": settle.as_str(), "description": description,
        "exchange_rate": rate, "fee": fee, "fee_details": fee_details, "net": settled - fee,
        "reporting_category": if ty == "refund" { "refund" } else { "charge" }, "source": source,
        "status": "pending", "type": ty,
    }));
    id
}

/// Parameters of a confirmation.
pub(crate) struct Confirm<'a> {
    pub pi_id: &'a str,
    pub pm_id: &'a str,
    pub invoice: Option<&'a str>,
}

/// Confirms a PaymentIntent with a payment method: creates the Charge (and its balance
/// transaction on success) and emits the events Stripe does. Returns the charge id and whether
/// it succeeded. The PaymentIntent is updated in place.
pub(crate) fn confirm(db: &mut Db, ctx: &Ctx, c: Confirm<'_>) -> Result<(String, bool), ApiError> {
    let pi = db
        .get_kind("payment_intent", c.pi_id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("payment_intent", c.pi_id))?;
    let pm = db
        .get_kind("payment_method", c.pm_id)
        .cloned()
        .ok_or_else(|| ApiError::missing_ref("PaymentMethod", c.pm_id, "payment_method"))?;
    let amount = pi["amount"].as_i64().unwrap_or(0);
    let cur = pi["currency"]
        .as_str()
        .and_then(|x| Currency::parse(x).ok())
        .unwrap_or(Currency::USD);
    let decline = match behavior_of(&pm) {
        CardBehavior::Succeeds => None,
        CardBehavior::DeclinesAlways(code) | CardBehavior::DeclinesOnCharge(code) => Some(code),
    };
    let ch_id = db.new_id("ch");
    let now = db.now();
    let succeeded = decline.is_none();
    let txn = if succeeded {
        Some(new_balance_txn(
            db,
            "charge",
            &ch_id,
            amount,
            cur,
            ctx.account_currency,
            pi["description"].clone(),
            true,
        ))
    } else {
        None
    };
    let card = &pm["card"];
    let outcome = match decline {
        None => {
            json!({"advice_code": null, "network_advice_code": null, "network_decline_code": null, "network_status": "approved_by_network", "reason": null, "risk_level": "normal", "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"})
        }
        Some(code) => {
            json!({"advice_code": "try_again_later", "network_advice_code": null, "network_decline_code": null, "network_status": "declined_by_network", "reason": code, "risk_level": "normal", "risk_score": 40, "seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined"})
        }
    };
    let charge = json!({
        "id": ch_id, "object": "charge", "amount": amount, "amount_captured": if succeeded { amount } else { 0 },
        "amount_refunded": 0, "application": null, "application_fee": null, "application_fee_amount": null,
        "balance_transaction": txn, "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": "SIMULATED SAAS", "captured": succeeded, "created": now,
        "currency": cur.as_str(), "customer": pi["customer"], "description": pi["description"], "disputed": false,
        "failure_balance_transaction": null, "failure_code": decline.map(|_| "card_declined"),
        "failure_message": decline.map(decline_message), "fraud_details": {}, "livemode": ctx.livemode,
        "metadata": pi["metadata"], "on_behalf_of": null, "outcome": outcome, "paid": succeeded,
        "payment_intent": c.pi_id, "payment_method": c.pm_id,
        "payment_method_details": {"card": {
            "amount_authorized": if succeeded { json!(amount) } else { Value::Null }, "authorization_code": if succeeded { json!("123456") } else { Value::Null },
            "brand": card["brand"], "checks": card["checks"], "country": card["country"], "exp_month": card["exp_month"],
            "exp_year": card["exp_year"], "extended_authorization": {"status": "disabled"}, "fingerprint": card["fingerprint"],
            "funding": card["funding"], "incremental_authorization": {"status": "unavailable"}, "installments": null,
            "last4": card["last4"], "mandate": null, "multicapture": {"status": "unavailable"}, "network": card["brand"],
            "network_token": {"used": false}, "network_transaction_id": "104102978678771",
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": "unregulated", "three_d_secure": null, "wallet": null,
        }, "type": "card"},
        "radar_options": {}, "receipt_email": null, "receipt_number": null,
        "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", ch_id),
        "refunded": false, "review": null, "shipping": null, "source": null, "source_transfer": null,
        "statement_descriptor": null, "statement_descriptor_suffix": null,
        "status": if succeeded { "succeeded" } else { "failed" }, "transfer_data": null, "transfer_group": null,
        "_invoice": c.invoice,
    });
    db.insert("charge", &ch_id, charge);
    let mut npi = pi.clone();
    npi["latest_charge"] = json!(ch_id);
    npi["payment_method"] = json!(c.pm_id);
    match decline {
        None => {
            npi["status"] = json!("succeeded");
            npi["amount_received"] = json!(amount);
            npi["last_payment_error"] = Value::Null;
        }
        Some(code) => {
            npi["status"] = json!("requires_payment_method");
            npi["payment_method"] = Value::Null;
            let pm_rendered = render::render(db, "payment_method", &pm, &ctx.version);
            npi["last_payment_error"] = json!({
                "advice_code": "try_again_later", "charge": ch_id, "code": "card_declined", "decline_code": code,
                "doc_url": "https://stripe.com/docs/error-codes/card-declined", "message": decline_message(code),
                "payment_method": pm_rendered, "type": "card_error",
            });
        }
    }
    if let Some(x) = db.get_kind_mut("payment_intent", c.pi_id) {
        *x = npi;
    }
    if succeeded {
        emit(db, ctx, "payment_intent.succeeded", c.pi_id, None);
        emit(db, ctx, "charge.succeeded", &ch_id, None);
    } else {
        emit(db, ctx, "charge.failed", &ch_id, None);
        emit(db, ctx, "payment_intent.payment_failed", c.pi_id, None);
    }
    Ok((ch_id, succeeded))
}

/// The 402 card error Stripe returns for a declined confirmation.
pub(crate) fn decline_error(db: &Db, ctx: &Ctx, pi_id: &str, ch_id: &str) -> ApiError {
    let pi = db
        .get_kind("payment_intent", pi_id)
        .map(|v| render::render(db, "payment_intent", v, &ctx.version))
        .unwrap_or(Value::Null);
    let err = pi["last_payment_error"].clone();
    let code = err["decline_code"]
        .as_str()
        .unwrap_or("generic_decline")
        .to_string();
    let mut extra = Map::new();
    extra.insert("charge".into(), json!(ch_id));
    extra.insert("payment_method".into(), err["payment_method"].clone());
    extra.insert("payment_intent".into(), pi);
    extra.insert("advice_code".into(), json!("try_again_later"));
    extra.insert(
        "request_log_url".into(),
        json!(format!(
            "https://dashboard.stripe.com/test/logs/{}",
            ctx.req_id
        )),
    );
    ApiError::card_declined(&code, decline_message(&code), extra)
}

/// Minimum charge amounts per currency (Stripe: "Amount must be at least $0.50 usd").
fn minimum(cur: Currency) -> Option<(i64, String)> {
    Some(match cur.as_str() {
        "usd" => (50, "$0.50 usd".into()),
        "eur" => (50, "€0.50 eur".into()),
        "gbp" => (30, "£0.30 gbp".into()),
        "jpy" => (50, "¥50 jpy".into()),
        "cad" | "aud" | "chf" | "nzd" | "sgd" => (50, format!("0.50 {}", cur.as_str())),
        _ => return None,
    })
}

/// Creates a PaymentIntent object (no events).
// A PaymentIntent has many independent inputs; a builder would add nothing here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn new_pi(
    db: &mut Db,
    ctx: &Ctx,
    amount: i64,
    cur: Currency,
    customer: Value,
    description: Value,
    metadata: Value,
    invoice: Option<&str>,
) -> String {
    let id = db.new_id("pi");
    let secret_tail = db.new_id("secret");
    db.insert("payment_intent", &id, json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
        "amount_received": 0, "application": null, "application_fee_amount": null,
        "automatic_payment_methods": null, "canceled_at": null, "cancellation_reason": null,
        "capture_method": "automatic_async", "client_secret": format!("{id}_{secret_tail}"),
        "confirmation_method": "automatic", "created": db.now(), "currency": cur.as_str(), "customer": customer,
        "customer_account": null, "description": description, "excluded_payment_method_types": null,
        "last_payment_error": null, "latest_charge": null, "livemode": ctx.livemode, "managed_payments": {"enabled": false}, "metadata": metadata,
        "next_action": null, "on_behalf_of": null, "payment_method": null,
        "payment_method_configuration_details": null,
        "payment_method_options": {"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": null, "receipt_email": null, "review": null,
        "setup_future_usage": null, "shipping": null, "source": null, "statement_descriptor": null,
        "statement_descriptor_suffix": null, "status": "requires_payment_method", "transfer_data": null,
        "transfer_group": null, "_invoice": invoice,
    }));
    id
}

pub(crate) fn payment_intents(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "amount",
                    "currency",
                    "customer",
                    "description",
                    "metadata",
                    "payment_method",
                    "payment_method_types",
                    "automatic_payment_methods",
                    "confirm",
                    "return_url",
                    "off_session",
                    "receipt_email",
                    "statement_descriptor",
                    "statement_descriptor_suffix",
                    "capture_method",
                    "setup_future_usage",
                    "payment_method_options",
                    "error_on_requires_action",
                ],
            )?;
            let amount = params::req_int(p, "amount")?;
            let cur = params::currency_of(params::req_s(p, "currency")?, "currency")?;
            params::check_amount(amount, cur, "amount", false)?;
            if let Some((min, shown)) = minimum(cur)
                && amount < min
            {
                return Err(ApiError::invalid(
                    "amount_too_small",
                    format!("Amount must be at least {shown}"),
                    Some("amount"),
                ));
            }
            if amount > 99_999_999 {
                return Err(ApiError::invalid(
                    "amount_too_large",
                    "Amount must be no more than 999,999.99",
                    Some("amount"),
                ));
            }
            if let Some(cm) = s(p, "capture_method")
                && cm == "manual"
            {
                return Err(ApiError::invalid_nocode(
                    "The simulator does not support capture_method=manual.",
                    Some("capture_method"),
                ));
            }
            let customer = match s(p, "customer") {
                Some(c) => {
                    need_ref(db, "customer", c, "customer")?;
                    json!(c)
                }
                None => Value::Null,
            };
            let types = params::str_list(p, "payment_method_types")?;
            if let Some(t) = &types
                && let Some(bad) = t.iter().find(|x| x.as_str() != "card")
            {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    format!(
                        "The payment method type \"{bad}\" is invalid. Please ensure the provided type is activated in your dashboard (https://dashboard.stripe.com/account/payments/settings) and your account is enabled for any preview features that you are trying to use."
                    ),
                    Some("payment_method_types"),
                ));
            }
            let apm_enabled = params::boolean_at(
                params::path(p, &["automatic_payment_methods", "enabled"]),
                "automatic_payment_methods[enabled]",
            )?;
            if types.is_some() && apm_enabled == Some(true) {
                return Err(ApiError::invalid_nocode(
                    "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
                    None,
                ));
            }
            let confirm_now = params::boolean(p, "confirm")?.unwrap_or(false);
            let allow_redirects =
                params::path(p, &["automatic_payment_methods", "allow_redirects"])
                    .and_then(Value::as_str)
                    .unwrap_or("always");
            let uses_apm = types.is_none();
            if confirm_now && uses_apm && allow_redirects != "never" && s(p, "return_url").is_none()
            {
                return Err(ApiError::invalid_nocode(
                    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard. Because some of these payment methods might redirect your customer off of your page, you must provide a `return_url`. If you don't want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents.",
                    None,
                ));
            }
            let pm_id = match s(p, "payment_method") {
                Some(pm) => Some(resolve_pm(db, ctx, pm, "payment_method", false)?),
                None => None,
            };
            if confirm_now && pm_id.is_none() {
                return Err(ApiError::invalid(
                    "payment_intent_unexpected_state",
                    "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.",
                    None,
                ));
            }
            let desc = s(p, "description").map(|d| json!(d)).unwrap_or(Value::Null);
            let id = new_pi(
                db,
                ctx,
                amount,
                cur,
                customer,
                desc,
                json!(params::metadata(p)?),
                None,
            );
            if let Some(x) = db.get_kind_mut("payment_intent", &id) {
                if uses_apm {
                    x["automatic_payment_methods"] =
                        json!({"allow_redirects": allow_redirects, "enabled": true});
                }
                if let Some(pm) = &pm_id {
                    x["payment_method"] = json!(pm);
                    x["status"] = json!("requires_confirmation");
                }
            }
            emit(db, ctx, "payment_intent.created", &id, None);
            if let (true, Some(pm)) = (confirm_now, pm_id) {
                let (ch, ok) = confirm(
                    db,
                    ctx,
                    Confirm {
                        pi_id: &id,
                        pm_id: &pm,
                        invoice: None,
                    },
                )?;
                if !ok {
                    return Err(decline_error(db, ctx, &id, &ch));
                }
            }
            Ok(Out::Obj(id))
        }
        ("POST", [id, "confirm"]) => {
            allow(
                p,
                &[
                    "payment_method",
                    "return_url",
                    "off_session",
                    "receipt_email",
                    "payment_method_types",
                    "error_on_requires_action",
                ],
            )?;
            let pi = db
                .get_kind("payment_intent", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("payment_intent", id))?;
            let st = pi["status"].as_str().unwrap_or("");
            if !["requires_payment_method", "requires_confirmation"].contains(&st) {
                return Err(ApiError::invalid(
                    "payment_intent_unexpected_state",
                    format!(
                        "This PaymentIntent's status is {st}, but it must be one of requires_payment_method, requires_confirmation, or requires_action to be confirmed."
                    ),
                    None,
                ));
            }
            let pm = match s(p, "payment_method") {
                Some(pm) => resolve_pm(db, ctx, pm, "payment_method", false)?,
                None => pi["payment_method"].as_str().map(str::to_string).ok_or_else(|| ApiError::invalid("payment_intent_unexpected_state", "You cannot confirm this PaymentIntent because it's missing a payment method.", None))?,
            };
            let invoice = pi["_invoice"].as_str().map(str::to_string);
            let (ch, ok) = confirm(
                db,
                ctx,
                Confirm {
                    pi_id: id,
                    pm_id: &pm,
                    invoice: invoice.as_deref(),
                },
            )?;
            if !ok {
                return Err(decline_error(db, ctx, id, &ch));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id, "cancel"]) => {
            allow(p, &["cancellation_reason"])?;
            let pi = db
                .get_kind("payment_intent", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("payment_intent", id))?;
            let st = pi["status"].as_str().unwrap_or("");
            if st == "succeeded" || st == "canceled" {
                return Err(ApiError::invalid(
                    "payment_intent_unexpected_state",
                    format!(
                        "You cannot cancel this PaymentIntent because it has a status of {st}. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_reauthorization, requires_confirmation, requires_action, processing."
                    ),
                    None,
                ));
            }
            if pi["_invoice"].is_string() {
                return Err(ApiError::invalid_nocode(
                    "You cannot cancel this PaymentIntent because it was created by an invoice; void the invoice instead.",
                    None,
                ));
            }
            let now = db.now();
            if let Some(x) = db.get_kind_mut("payment_intent", id) {
                x["status"] = json!("canceled");
                x["canceled_at"] = json!(now);
                x["cancellation_reason"] =
                    p.get("cancellation_reason").cloned().unwrap_or(Value::Null);
            }
            emit(db, ctx, "payment_intent.canceled", id, None);
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", [id]) => {
            allow(p, &["description", "metadata", "receipt_email"])?;
            let old = db
                .get_kind("payment_intent", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("payment_intent", id))?;
            let mut v = old.clone();
            if let Some(d) = p.get("description").and_then(Value::as_str) {
                v["description"] = if d.is_empty() { Value::Null } else { json!(d) };
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if let Some(x) = db.get_kind_mut("payment_intent", id) {
                *x = v;
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "customer",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            list_kind(db, "payment_intent", "/v1/payment_intents", p, |v| {
                Ok(customer.as_ref().is_none_or(|c| v["customer"] == json!(c)))
            })
        }
        ("GET", [id]) => {
            db.get_kind("payment_intent", id)
                .ok_or_else(|| ApiError::not_found("payment_intent", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/payment_intents/{}", segs.join("/")),
        )),
    }
}

pub(crate) fn charges(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "customer",
                    "payment_intent",
                    "transfer_group",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let customer = s(p, "customer").map(str::to_string);
            let pi = s(p, "payment_intent").map(str::to_string);
            list_kind(db, "charge", "/v1/charges", p, |v| {
                Ok(customer.as_ref().is_none_or(|c| v["customer"] == json!(c))
                    && pi.as_ref().is_none_or(|x| v["payment_intent"] == json!(x)))
            })
        }
        ("GET", [id]) => {
            db.get_kind("charge", id)
                .ok_or_else(|| ApiError::not_found("charge", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        ("GET", [id, "refunds"]) => {
            db.get_kind("charge", id)
                .ok_or_else(|| ApiError::not_found("charge", id))?;
            let cid = id.to_string();
            list_kind(db, "refund", &format!("/v1/charges/{id}/refunds"), p, |v| {
                Ok(v["charge"] == json!(cid))
            })
        }
        ("POST", [id]) => {
            allow(p, &["description", "metadata"])?;
            let old = db
                .get_kind("charge", id)
                .cloned()
                .ok_or_else(|| ApiError::not_found("charge", id))?;
            let mut v = old.clone();
            if let Some(d) = p.get("description").and_then(Value::as_str) {
                v["description"] = if d.is_empty() { Value::Null } else { json!(d) };
            }
            if let Some(m) = v["metadata"].as_object_mut() {
                params::merge_metadata(m, p)?;
            }
            if v != old {
                if let Some(x) = db.get_kind_mut("charge", id) {
                    *x = v;
                }
                emit(db, ctx, "charge.updated", id, Some(old));
            }
            Ok(Out::Obj(id.to_string()))
        }
        ("POST", []) => Err(ApiError::invalid_nocode(
            "The simulator does not support the legacy Charges API for creating payments; use PaymentIntents.",
            None,
        )),
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/charges/{}", segs.join("/")),
        )),
    }
}

pub(crate) fn refunds(db: &mut Db, ctx: &Ctx, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("POST", []) => {
            allow(
                p,
                &[
                    "charge",
                    "payment_intent",
                    "amount",
                    "reason",
                    "metadata",
                    "instructions_email",
                    "refund_application_fee",
                    "reverse_transfer",
                ],
            )?;
            let ch_id = match (s(p, "charge"), s(p, "payment_intent")) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::invalid_nocode(
                        "You may only specify one of these parameters: charge, payment_intent.",
                        None,
                    ));
                }
                (Some(c), None) => {
                    need_ref(db, "charge", c, "charge")?;
                    c.to_string()
                }
                (None, Some(pi)) => {
                    let pi_v = need_ref(db, "payment_intent", pi, "payment_intent")?;
                    if pi_v["status"] != "succeeded" {
                        return Err(ApiError::invalid_nocode(
                            format!(
                                "This PaymentIntent ({pi}) does not have a successful charge to refund."
                            ),
                            Some("payment_intent"),
                        ));
                    }
                    pi_v["latest_charge"].as_str().unwrap_or("").to_string()
                }
                (None, None) => {
                    return Err(ApiError::invalid_nocode(
                        "One of the following params should be provided for this request: payment_intent or charge.",
                        None,
                    ));
                }
            };
            let charge = db
                .get_kind("charge", &ch_id)
                .cloned()
                .ok_or_else(|| ApiError::missing_ref("charge", &ch_id, "charge"))?;
            if charge["status"] != "succeeded" {
                return Err(ApiError::invalid_nocode(
                    format!(
                        "Charge {ch_id} has not been captured successfully and cannot be refunded."
                    ),
                    Some("charge"),
                ));
            }
            if let Some(e) = crate::disputes::refund_refusal(db, &charge) {
                return Err(e);
            }
            let amount_total = charge["amount"].as_i64().unwrap_or(0);
            let refunded = charge["amount_refunded"].as_i64().unwrap_or(0);
            let remaining = amount_total - refunded;
            let cur = charge["currency"]
                .as_str()
                .and_then(|c| Currency::parse(c).ok())
                .unwrap_or(Currency::USD);
            if remaining <= 0 {
                return Err(ApiError::invalid(
                    "charge_already_refunded",
                    format!("Charge {ch_id} has already been refunded."),
                    None,
                ));
            }
            let amount = params::int(p, "amount")?.unwrap_or(remaining);
            params::check_amount(amount, cur, "amount", false)?;
            if amount > remaining {
                return Err(ApiError::invalid(
                    "amount_too_large",
                    format!(
                        "Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"
                    ),
                    Some("amount"),
                ));
            }
            if let Some(r) = s(p, "reason")
                && !["duplicate", "fraudulent", "requested_by_customer"].contains(&r)
            {
                return Err(ApiError::invalid(
                    "parameter_invalid_string",
                    "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                    Some("reason"),
                ));
            }
            let metadata = params::metadata(p)?;
            // `metadata[sim_status]=pending`: a refund the card network has not confirmed yet
            // (Stripe moves the balance at creation all the same); `/_sim/refunds/{id}/succeed`
            // or `/fail` settles it.
            let pending = metadata.get("sim_status").and_then(Value::as_str) == Some("pending");
            // Settle the refund at the charge's own rate, proportionally (Stripe converts refunds
            // at the original rate for the same settlement currency).
            let re_id = db.new_id("re");
            let settle_cur = ctx.account_currency;
            let charge_txn = charge["balance_transaction"]
                .as_str()
                .and_then(|t| db.get_kind("balance_transaction", t))
                .cloned();
            let txn_id = db.new_id("txn");
            let now = db.now();
            let (settled, rate) = match &charge_txn {
                Some(t) => {
                    let full = t["amount"].as_i64().unwrap_or(0);
                    let s = round_div(
                        i128::from(full) * i128::from(amount),
                        i128::from(amount_total.max(1)),
                    ) as i64;
                    (s, t["exchange_rate"].as_f64())
                }
                None => convert(amount, cur, settle_cur),
            };
            db.insert("balance_transaction", &txn_id, json!({
                "id": txn_id, "object": "balance_transaction", "amount": -settled, "available_on": now + 2 * 86_400,
                "balance_type": "payments", "created": now, "currency": settle_cur.as_str(), "description": "REFUND FOR CHARGE",
                "exchange_rate": rate, "fee": 0, "fee_details": [], "net": -settled, "reporting_category": "refund",
                "source": re_id, "status": "pending", "type": "refund",
            }));
            let mut refund = json!({
                "id": re_id, "object": "refund", "amount": amount, "balance_transaction": txn_id, "charge": ch_id,
                "created": now, "currency": cur.as_str(), "customer": charge["customer"], "customer_account": null,
                "destination_details": {"card": {"reference": "7392640817392", "reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": metadata, "payment_intent": charge["payment_intent"],
                "payment_method": charge["payment_method"], "reason": s(p, "reason"), "receipt_number": null,
                "source_transfer_reversal": null, "status": "succeeded", "transfer_reversal": null,
            });
            if pending {
                refund["status"] = json!("pending");
                refund["pending_reason"] = json!("processing");
            }
            db.insert("refund", &re_id, refund);
            let old = charge.clone();
            let mut nc = charge;
            nc["amount_refunded"] = json!(refunded + amount);
            nc["refunded"] = json!(refunded + amount == amount_total);
            if let Some(x) = db.get_kind_mut("charge", &ch_id) {
                *x = nc;
            }
            emit(db, ctx, "charge.refunded", &ch_id, Some(old));
            emit(db, ctx, "refund.created", &re_id, None);
            Ok(Out::Obj(re_id))
        }
        ("GET", []) => list_by_charge(db, "refund", "/v1/refunds", p),
        ("GET", [id]) => {
            db.get_kind("refund", id)
                .ok_or_else(|| ApiError::not_found("refund", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/refunds/{}", segs.join("/")),
        )),
    }
}

/// `POST /_sim/refunds/{id}/fail`: the card refund fails (`lost_or_stolen_card`). The money
/// comes back to the balance as a `refund_failure` balance transaction (the refund's own
/// `balance_transaction` stays), the charge's `amount_refunded` goes down again, and Stripe
/// sends `refund.failed`, `refund.updated` and `charge.refund.updated`.
pub(crate) fn fail_refund(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &[])?;
    let old = db
        .get_kind("refund", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("refund", id))?;
    let status = old["status"].as_str().unwrap_or("");
    if status != "succeeded" && status != "pending" {
        return Err(ApiError::invalid_nocode(
            format!(
                "Refund {id} cannot fail because its status is {status}; only a succeeded or pending refund can fail."
            ),
            None,
        ));
    }
    let refund_txn = old["balance_transaction"]
        .as_str()
        .and_then(|t| db.get_kind("balance_transaction", t))
        .cloned()
        .unwrap_or(Value::Null);
    let settled = -refund_txn["amount"].as_i64().unwrap_or(0);
    let settle_cur = refund_txn["currency"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| ctx.account_currency.as_str().to_string());
    let txn_id = db.new_id("txn");
    let now = db.now();
    db.insert("balance_transaction", &txn_id, json!({
        "id": txn_id, "object": "balance_transaction", "amount": settled, "available_on": now + 2 * 86_400,
        "balance_type": "payments", "created": now, "currency": settle_cur, "description": "REFUND FAILURE",
        "exchange_rate": refund_txn["exchange_rate"], "fee": 0, "fee_details": [], "net": settled,
        "reporting_category": "refund_failure", "source": id, "status": "pending", "type": "refund_failure",
    }));
    let mut v = old.clone();
    v["status"] = json!("failed");
    v["failure_reason"] = json!("lost_or_stolen_card");
    v["failure_balance_transaction"] = json!(txn_id);
    if let Some(m) = v.as_object_mut() {
        m.remove("pending_reason");
    }
    v["destination_details"]["card"]["reference_status"] = json!("unavailable");
    if let Some(x) = db.get_kind_mut("refund", id) {
        *x = v;
    }
    let ch_id = old["charge"].as_str().unwrap_or("").to_string();
    if let Some(ch) = db.get_kind_mut("charge", &ch_id) {
        let amount = old["amount"].as_i64().unwrap_or(0);
        let refunded = (ch["amount_refunded"].as_i64().unwrap_or(0) - amount).max(0);
        ch["amount_refunded"] = json!(refunded);
        ch["refunded"] = json!(refunded > 0 && refunded == ch["amount"].as_i64().unwrap_or(0));
    }
    emit(db, ctx, "refund.failed", id, None);
    emit(db, ctx, "refund.updated", id, Some(old.clone()));
    emit(db, ctx, "charge.refund.updated", id, Some(old));
    Ok(Out::Obj(id.to_string()))
}

/// `POST /_sim/refunds/{id}/succeed`: a pending refund lands (`refund.updated`,
/// `charge.refund.updated`); the balance moved when it was created.
pub(crate) fn succeed_refund(db: &mut Db, ctx: &Ctx, id: &str, p: &Value) -> R {
    allow(p, &[])?;
    let old = db
        .get_kind("refund", id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("refund", id))?;
    let status = old["status"].as_str().unwrap_or("");
    if status != "pending" {
        return Err(ApiError::invalid_nocode(
            format!(
                "Refund {id} cannot succeed because its status is {status}; only a pending refund can."
            ),
            None,
        ));
    }
    let mut v = old.clone();
    v["status"] = json!("succeeded");
    if let Some(m) = v.as_object_mut() {
        m.remove("pending_reason");
    }
    v["destination_details"]["card"]["reference_status"] = json!("available");
    if let Some(x) = db.get_kind_mut("refund", id) {
        *x = v;
    }
    emit(db, ctx, "refund.updated", id, Some(old.clone()));
    emit(db, ctx, "charge.refund.updated", id, Some(old));
    Ok(Out::Obj(id.to_string()))
}

/// `GET` of a list Stripe filters by `charge` and `payment_intent` (refunds, disputes).
pub(crate) fn list_by_charge(db: &mut Db, kind: &str, url: &str, p: &Value) -> R {
    allow(
        p,
        &[
            "charge",
            "payment_intent",
            "created",
            "limit",
            "starting_after",
            "ending_before",
        ],
    )?;
    let ch = s(p, "charge").map(str::to_string);
    let pi = s(p, "payment_intent").map(str::to_string);
    list_kind(db, kind, url, p, |v| {
        Ok(ch.as_ref().is_none_or(|c| v["charge"] == json!(c))
            && pi.as_ref().is_none_or(|x| v["payment_intent"] == json!(x)))
    })
}

pub(crate) fn balance_transactions(db: &mut Db, method: &str, segs: &[&str], p: &Value) -> R {
    match (method, segs) {
        ("GET", []) => {
            allow(
                p,
                &[
                    "created",
                    "currency",
                    "payout",
                    "source",
                    "type",
                    "limit",
                    "starting_after",
                    "ending_before",
                ],
            )?;
            let source = s(p, "source").map(str::to_string);
            let ty = s(p, "type").map(str::to_string);
            let cur = s(p, "currency").map(str::to_lowercase);
            // What an automatic payout covered (its own `payout` transaction included); the
            // link is internal, as Stripe shows no `payout` field on a balance transaction.
            let payout = s(p, "payout")
                .map(|po| crate::payouts::filter_target(db, po))
                .transpose()?;
            list_kind(
                db,
                "balance_transaction",
                "/v1/balance_transactions",
                p,
                |v| {
                    Ok(source.as_ref().is_none_or(|x| v["source"] == json!(x))
                        && ty.as_ref().is_none_or(|x| v["type"] == json!(x))
                        && cur.as_ref().is_none_or(|x| v["currency"] == json!(x))
                        && payout.as_ref().is_none_or(|x| v["_payout"] == json!(x)))
                },
            )
        }
        ("GET", [id]) => {
            db.get_kind("balance_transaction", id)
                .ok_or_else(|| ApiError::not_found("balance transaction", id))?;
            Ok(Out::Obj(id.to_string()))
        }
        _ => Err(ApiError::unrecognized_url(
            method,
            &format!("/v1/balance_transactions/{}", segs.join("/")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_and_conversion() {
        assert_eq!(fee_for(10_000, Currency::USD), 320);
        assert_eq!(fee_for(2_000, Currency::USD), 88);
        let (usd, rate) = convert(1_000, Currency::EUR, Currency::USD);
        assert_eq!(usd, 1_080);
        assert_eq!(rate, Some(1.08));
        let (usd, _) = convert(5_000, Currency::JPY, Currency::USD);
        assert_eq!(usd, 3_350);
        let (usd, _) = convert(12_340, Currency::KWD, Currency::USD);
        assert_eq!(usd, 4_011);
        assert_eq!(convert(777, Currency::USD, Currency::USD), (777, None));
    }
}
