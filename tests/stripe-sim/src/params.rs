//! Reading Stripe-style parameters (all strings after form decoding) with Stripe's errors.

use mlc_core::Currency;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Rejects top-level parameters an endpoint does not know, as Stripe does.
pub(crate) fn allow(p: &Value, known: &[&str]) -> Result<(), ApiError> {
    if let Some(m) = p.as_object() {
        for k in m.keys() {
            if k != "expand" && !known.contains(&k.as_str()) {
                return Err(ApiError::unknown_param(k));
            }
        }
    }
    Ok(())
}

/// A non-empty string parameter.
pub(crate) fn s<'a>(p: &'a Value, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(crate) fn req_s<'a>(p: &'a Value, k: &str) -> Result<&'a str, ApiError> {
    match p.get(k) {
        None => Err(ApiError::missing(k)),
        Some(Value::String(s)) if s.is_empty() => Err(ApiError::invalid_empty(k)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            "parameter_invalid_string",
            format!("Invalid string: {k}"),
            Some(k),
        )),
    }
}

/// Nested lookup `a[b][c]` by path, with the Stripe-style display name for errors.
pub(crate) fn path<'a>(p: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut cur = p;
    for k in keys {
        cur = cur.get(k)?;
    }
    Some(cur)
}

pub(crate) fn int_at(v: Option<&Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::invalid_integer(name, s)),
        Some(_) => Err(ApiError::invalid_integer(name, "(hash)")),
    }
}

pub(crate) fn int(p: &Value, k: &str) -> Result<Option<i64>, ApiError> {
    int_at(p.get(k), k)
}

pub(crate) fn req_int(p: &Value, k: &str) -> Result<i64, ApiError> {
    int(p, k)?.ok_or_else(|| ApiError::missing(k))
}

pub(crate) fn boolean_at(v: Option<&Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match v.and_then(Value::as_str) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(other) => Err(ApiError::invalid(
            "parameter_invalid_boolean",
            format!("Invalid boolean: {other}"),
            Some(name),
        )),
    }
}

pub(crate) fn boolean(p: &Value, k: &str) -> Result<Option<bool>, ApiError> {
    boolean_at(p.get(k), k)
}

/// An array of strings (`k[]=a&k[]=b`); an empty string means "unset" (empty list).
pub(crate) fn str_list(p: &Value, k: &str) -> Result<Option<Vec<String>>, ApiError> {
    match p.get(k) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(Vec::new())),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::invalid("parameter_invalid_array", "Invalid array", Some(k))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid(
            "parameter_invalid_array",
            "Invalid array",
            Some(k),
        )),
    }
}

/// An array of hashes (`items[0][price]=...`).
pub(crate) fn hash_list<'a>(
    p: &'a Value,
    k: &str,
) -> Result<Vec<&'a Map<String, Value>>, ApiError> {
    match p.get(k) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_object().ok_or_else(|| {
                    ApiError::invalid("parameter_invalid_array", "Invalid array", Some(k))
                })
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "parameter_invalid_array",
            "Invalid array",
            Some(k),
        )),
    }
}

/// Currencies the simulated account can charge in.
const SUPPORTED: &[&str] = &[
    "usd", "eur", "gbp", "jpy", "kwd", "bhd", "jod", "omr", "tnd", "cad", "aud", "chf", "sek",
    "nok", "dkk", "pln", "czk", "huf", "isk", "twd", "krw", "inr", "mxn", "brl", "sgd", "hkd",
    "nzd", "zar", "ils", "aed", "sar", "ron", "try", "thb", "myr", "php", "idr", "vnd", "clp",
];

pub(crate) fn currency_of(v: &str, k: &str) -> Result<Currency, ApiError> {
    let c = Currency::parse(v)
        .ok()
        .filter(|c| SUPPORTED.contains(&c.as_str()));
    c.ok_or_else(|| {
        ApiError::invalid(
            "parameter_invalid_string",
            format!(
                "Invalid currency: {}. Stripe currently supports these currencies: {}",
                v.to_lowercase(),
                SUPPORTED.join(", ")
            ),
            Some(k),
        )
    })
}

pub(crate) fn currency(p: &Value, k: &str) -> Result<Option<Currency>, ApiError> {
    s(p, k).map(|v| currency_of(v, k)).transpose()
}

/// Amount checks Stripe applies: non-negative, and a multiple of the currency's step
/// (three-decimal currencies must end in 0).
pub(crate) fn check_amount(
    amount: i64,
    cur: Currency,
    name: &str,
    allow_zero: bool,
) -> Result<(), ApiError> {
    if amount < 0 || (!allow_zero && amount == 0) {
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            format!(
                "This value must be greater than or equal to {}.",
                if allow_zero { 0 } else { 1 }
            ),
            Some(name),
        ));
    }
    let step = cur.amount_step();
    if amount % step != 0 {
        let msg = if step == 10 {
            format!(
                "Invalid {name}: amounts in {} (a three-decimal currency) must have 0 as the last digit, e.g. {} or {}.",
                cur.as_str(),
                amount - amount % 10,
                amount - amount % 10 + 10
            )
        } else {
            format!(
                "Invalid {name}: amounts in {} must be a multiple of {step}.",
                cur.as_str()
            )
        };
        return Err(ApiError::invalid(
            "parameter_invalid_integer",
            msg,
            Some(name),
        ));
    }
    Ok(())
}

/// Metadata for create: `metadata[k]=v`; at most 50 keys, keys ≤ 40 chars, values ≤ 500.
pub(crate) fn metadata(p: &Value) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    merge_metadata(&mut out, p)?;
    Ok(out)
}

/// Metadata update semantics: `metadata[k]=` removes k, `metadata=` clears all.
pub(crate) fn merge_metadata(existing: &mut Map<String, Value>, p: &Value) -> Result<(), ApiError> {
    match p.get("metadata") {
        None => Ok(()),
        Some(Value::String(s)) if s.is_empty() => {
            existing.clear();
            Ok(())
        }
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    return Err(ApiError::invalid(
                        "parameter_invalid_string",
                        "Invalid metadata",
                        Some("metadata"),
                    ));
                };
                if k.chars().count() > 40 {
                    return Err(ApiError::invalid_nocode(
                        format!(
                            "Metadata keys can have a maximum length of 40 characters. The key `{k}` is too long."
                        ),
                        Some(&format!("metadata[{k}]")),
                    ));
                }
                if v.chars().count() > 500 {
                    return Err(ApiError::invalid_nocode(
                        format!(
                            "Metadata values can have up to 500 characters, but you passed in a value that is {} characters. Invalid value: {v}",
                            v.chars().count()
                        ),
                        Some(&format!("metadata[{k}]")),
                    ));
                }
                if v.is_empty() {
                    existing.remove(k);
                } else {
                    existing.insert(k.clone(), Value::String(v.to_string()));
                }
            }
            if existing.len() > 50 {
                return Err(ApiError::invalid_nocode(
                    "You can have at most 50 metadata keys.",
                    Some("metadata"),
                ));
            }
            Ok(())
        }
        Some(_) => Err(ApiError::invalid(
            "parameter_invalid_string",
            "Invalid hash",
            Some("metadata"),
        )),
    }
}

/// Parses a decimal such as `8.25` into an integer scaled by 10^4 (82500); rates, not money.
pub(crate) fn rate_e4(v: &str, name: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid(
            "parameter_invalid_string",
            format!("Invalid decimal: {v}"),
            Some(name),
        )
    };
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty()
        || frac.len() > 4
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let w: i64 = whole.parse().map_err(|_| bad())?;
    let f: i64 = format!("{frac:0<4}").parse().map_err(|_| bad())?;
    Ok(w * 10_000 + f)
}

/// A rate scaled by 10^4 as a JSON number (`82500` → `8.25`).
pub(crate) fn rate_json(e4: i64) -> Value {
    // Rates are shown as JSON numbers by Stripe; this is a display of a ratio, never money.
    serde_json::Number::from_f64(e4 as f64 / 10_000.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}
