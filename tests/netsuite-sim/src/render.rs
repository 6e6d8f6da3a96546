//! Rendering stored records as NetSuite REST JSON (`links`, `refName` references, sublists).

use serde_json::{Map, Value, json};

use crate::model::{Db, Kind, Record, RecordType, Schema, dec_of, ref_id};

pub(crate) fn record_url(base: &str, t: RecordType, id: u64) -> String {
    format!("{base}/services/rest/record/v1/{}/{id}", t.url_name())
}

fn self_link(href: String) -> Value {
    json!([{"rel": "self", "href": href}])
}

/// Decimals are stored exactly; NetSuite answers them as JSON numbers, so they are converted
/// only here, at output. Up to 15 significant digits the printed number equals the decimal.
fn dec_out(v: &Value) -> Value {
    match dec_of(v) {
        Some(d) => {
            let s = d.normalize().to_string();
            match s.parse::<i64>() {
                Ok(i) => json!(i),
                Err(_) => s
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::String(s), Value::Number),
            }
        }
        None => v.clone(),
    }
}

fn render_ref(db: &Db, base: &str, targets: &[RecordType], v: &Value) -> Value {
    let Some(id) = ref_id(v) else {
        return v.clone();
    };
    match db.find_any(targets, id) {
        Some(r) => json!({
            "links": self_link(record_url(base, r.rtype, r.id)),
            "id": r.id.to_string(),
            "refName": db.ref_name(r),
        }),
        None => json!({"id": id.to_string()}),
    }
}

fn render_fields(
    db: &Db,
    base: &str,
    schema: &Schema,
    fields: &Map<String, Value>,
    self_url: &str,
    expand: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in fields {
        let rendered = match schema.kind(k) {
            Some(Kind::Dec) => dec_out(v),
            Some(Kind::Ref(targets)) => render_ref(db, base, targets, v),
            // Shown inline with each value's refName (how NetSuite shows a multiselect on GET is
            // not in our reference: see the crate docs).
            Some(Kind::Multi(targets)) => {
                let values: Vec<Value> = v
                    .get("items")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|one| render_ref(db, base, targets, one))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"items": values})
            }
            Some(Kind::Sub(line_schema)) => {
                let href = format!("{self_url}/{k}");
                if expand {
                    let lines: Vec<Value> = v
                        .get("items")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_object)
                                .map(|l| {
                                    let mut m =
                                        render_fields(db, base, line_schema, l, &href, false);
                                    m.insert("links".into(), json!([]));
                                    Value::Object(m)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    json!({
                        "links": self_link(href),
                        "count": lines.len(),
                        "hasMore": false,
                        "offset": 0,
                        "totalResults": lines.len(),
                        "items": lines,
                    })
                } else {
                    json!({"links": self_link(href)})
                }
            }
            _ => v.clone(),
        };
        out.insert(k.clone(), rendered);
    }
    out
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

pub(crate) fn iso_ms(ms: i64) -> String {
    iso(ms)
}

/// A single record as `GET /record/v1/{type}/{id}` answers it.
pub(crate) fn render_record(db: &Db, base: &str, r: &Record, expand: bool) -> Value {
    let url = record_url(base, r.rtype, r.id);
    let mut m = render_fields(db, base, r.rtype.schema(), &r.fields, &url, expand);
    m.insert("links".into(), self_link(url));
    m.insert("id".into(), json!(r.id.to_string()));
    if !r.rtype.read_only() {
        m.insert("dateCreated".into(), json!(iso(r.created_ms)));
        m.insert("lastModifiedDate".into(), json!(iso(r.modified_ms)));
    }
    match r.rtype {
        RecordType::Invoice | RecordType::CreditMemo => {
            let total = db.total(r);
            m.insert("total".into(), dec_out(&json!(total.to_string())));
            m.insert("subtotal".into(), dec_out(&json!(total.to_string())));
            if r.rtype == RecordType::CreditMemo {
                let unapplied = db.amount_remaining(r, None);
                m.insert("unapplied".into(), dec_out(&json!(unapplied.to_string())));
                m.insert(
                    "applied".into(),
                    dec_out(&json!((total - unapplied).to_string())),
                );
            }
            if r.rtype == RecordType::Invoice {
                let rem = db.amount_remaining(r, None);
                m.insert("amountRemaining".into(), dec_out(&json!(rem.to_string())));
                m.insert(
                    "amountPaid".into(),
                    dec_out(&json!(db.applied(r.id, None).to_string())),
                );
            }
        }
        RecordType::CustomerPayment => {
            let applied: rust_decimal::Decimal = r
                .lines("apply")
                .iter()
                .filter_map(|l| l.get("amount").and_then(dec_of))
                .sum();
            m.insert("applied".into(), dec_out(&json!(applied.to_string())));
            m.insert(
                "unapplied".into(),
                dec_out(&json!((db.total(r) - applied).to_string())),
            );
        }
        RecordType::CustomerRefund | RecordType::Deposit => {
            m.insert("total".into(), dec_out(&json!(db.total(r).to_string())));
        }
        _ => {}
    }
    if let Some((name, code)) = db.status(r) {
        m.insert("status".into(), json!({"id": code, "refName": name}));
    }
    Value::Object(m)
}

/// A sublist as `GET /record/v1/{type}/{id}/{sublist}` answers it.
pub(crate) fn render_sublist(db: &Db, base: &str, r: &Record, sub: &str) -> Option<Value> {
    let schema = r.rtype.schema();
    if !matches!(schema.kind(sub), Some(Kind::Sub(_))) {
        return None;
    }
    let url = record_url(base, r.rtype, r.id);
    let mut only = Map::new();
    only.insert(
        sub.to_owned(),
        r.fields
            .get(sub)
            .cloned()
            .unwrap_or_else(|| json!({"items": []})),
    );
    render_fields(db, base, schema, &only, &url, true).remove(sub)
}
