//! Stripe's form-style query encoding: `expand[]=a&expand[]=b`, `created[gte]=N`, `types[]=x`.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Characters escaped in values: everything but unreserved characters (RFC 3986).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Characters escaped in keys: as values, but brackets stay literal as Stripe's SDKs send them.
const KEY: &AsciiSet = &VALUE.remove(b'[').remove(b']');

/// Characters escaped in a path segment (an object ID): everything but unreserved characters, so
/// an ID can never add a path segment or a query.
pub(crate) const SEGMENT: &AsciiSet = VALUE;

/// An ordered list of query parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// An empty query.
    pub fn new() -> Self {
        Query::default()
    }

    /// Adds `key=value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((key.into(), value.into()));
        self
    }

    /// Adds `expand[]=path` for each path.
    pub fn expand(&mut self, paths: &[&str]) -> &mut Self {
        for p in paths {
            self.push("expand[]", *p);
        }
        self
    }

    /// The parameters in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// `a=1&b%5B%5D=...` with literal brackets in keys.
    pub fn encode(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, KEY),
                    utf8_percent_encode(v, VALUE)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_stripe_sdks() {
        let mut q = Query::new();
        q.expand(&["data.line_items", "latest_charge.balance_transaction"])
            .push("created[gte]", "1764201600")
            .push("types[]", "invoice.paid")
            .push("metadata[order id]", "a&b=c");
        assert_eq!(
            q.encode(),
            "expand[]=data.line_items&expand[]=latest_charge.balance_transaction\
             &created[gte]=1764201600&types[]=invoice.paid&metadata[order%20id]=a%26b%3Dc"
        );
    }
}
