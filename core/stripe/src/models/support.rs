//! Building blocks shared by the models: expandable references, list objects, and tolerant field
//! readers (null as empty, exact decimals, "id or object" references).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::StripeModel;

/// Stripe metadata: string keys to string values. `null` reads as empty.
pub type Metadata = BTreeMap<String, String>;

/// A reference Stripe sends either as an ID or, when expanded (`expand[]=`), as the full object.
#[derive(Debug, Clone, PartialEq)]
pub enum Expandable<T> {
    /// Not expanded: just the ID.
    Id(String),
    /// Expanded: the object, with its own `raw` JSON.
    Object(Box<T>),
}

impl<T> Expandable<T> {
    /// The expanded object, if it was expanded.
    pub fn as_object(&self) -> Option<&T> {
        match self {
            Expandable::Id(_) => None,
            Expandable::Object(o) => Some(o),
        }
    }
}

impl<T: StripeModel> Expandable<T> {
    /// The referenced object's ID, expanded or not.
    pub fn id(&self) -> &str {
        match self {
            Expandable::Id(id) => id,
            Expandable::Object(o) => o.id(),
        }
    }
}

impl<'de, T: StripeModel> Deserialize<'de> for Expandable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read the raw text first so the expanded object keeps exact numbers and its own `raw`.
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let id: String = serde_json::from_str(text).map_err(D::Error::custom)?;
            return Ok(Expandable::Id(id));
        }
        T::from_json(text)
            .map(|o| Expandable::Object(Box::new(o)))
            .map_err(D::Error::custom)
    }
}

/// A Stripe list object (`{"object":"list","data":[...],"has_more":..,"url":..}`).
#[derive(Debug, Clone, PartialEq)]
pub struct List<T> {
    /// The items on this page.
    pub data: Vec<T>,
    /// More items exist beyond `data` (page them with `starting_after`).
    pub has_more: bool,
    /// The list's URL path, e.g. `/v1/invoices/in_123/lines`.
    pub url: Option<String>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            data: Vec::new(),
            has_more: false,
            url: None,
        }
    }
}

impl<'de, T: StripeModel> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default, deserialize_with = "null_default")]
            data: Vec<Box<RawValue>>,
            #[serde(default)]
            has_more: bool,
            #[serde(default)]
            url: Option<String>,
        }
        let wire = Wire::deserialize(d)?;
        let data = wire
            .data
            .iter()
            .map(|item| T::from_json(item.get()))
            .collect::<Result<Vec<T>, _>>()
            .map_err(D::Error::custom)?;
        Ok(List {
            data,
            has_more: wire.has_more,
            url: wire.url,
        })
    }
}

/// Reads `null` (or a missing field, with `#[serde(default)]`) as the type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a decimal exactly from a JSON number (`1.234`, `1e-3`) or a decimal string (`"12.5"`),
/// from the number's text, never through `f64`.
pub(crate) fn opt_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let Some(raw) = Option::<Box<RawValue>>::deserialize(d)? else {
        return Ok(None);
    };
    let text = raw.get().trim();
    let number = if text.starts_with('"') {
        serde_json::from_str::<String>(text).map_err(D::Error::custom)?
    } else {
        text.to_string()
    };
    parse_decimal(&number)
        .map(Some)
        .map_err(|e| D::Error::custom(format!("`{number}` is not a decimal: {e}")))
}

/// Parses decimal text exactly, accepting exponents.
pub(crate) fn parse_decimal(text: &str) -> Result<Decimal, rust_decimal::Error> {
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text).or_else(|_| Decimal::from_str(text))
    }
}

/// Reads an "ID or object" reference to a kind that is not modelled here (subscription, tax
/// rate, ...) as just its ID.
pub(crate) fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrObject {
        Id(String),
        Object {
            #[serde(default)]
            id: Option<String>,
        },
    }
    Ok(match Option::<IdOrObject>::deserialize(d)? {
        None => None,
        Some(IdOrObject::Id(id)) => Some(id),
        Some(IdOrObject::Object { id }) => id,
    })
}
