//! What this account's API dialect refuses, learnt from its answers and remembered per client
//! (one client per connection), so the next request does not pay for the same refusal.
//!
//! Older API versions and other Stripe-compatible servers refuse some `expand[]` paths
//! (`400 Bad expand 'discounts'`) and lack some list endpoints (`404` on
//! `/v1/invoice_payments`). Neither may fail a paid sale: the client asks again without the
//! refused expand and fetches what it would have brought with a separate call, or reports the
//! endpoint as unavailable so the caller falls back to fields carrying the same facts.

use std::collections::BTreeSet;
use std::sync::Mutex;

use super::StripeError;

#[derive(Debug, Default)]
pub(super) struct DialectMemory {
    /// `"<resource> <expand path>"`, e.g. `"invoice discounts"`.
    refused_expands: Mutex<BTreeSet<String>>,
    /// Paths answered 404 as unknown URLs, e.g. `/v1/invoice_payments`.
    missing_endpoints: Mutex<BTreeSet<String>>,
}

fn relock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DialectMemory {
    pub(super) fn expand_refused(&self, resource: &str, path: &str) -> bool {
        relock(&self.refused_expands).contains(&format!("{resource} {path}"))
    }

    pub(super) fn refuse_expand(&self, resource: &str, path: &str) {
        if relock(&self.refused_expands).insert(format!("{resource} {path}")) {
            tracing::warn!(
                stripe.resource = resource,
                stripe.expand = path,
                "Stripe refused expand[]={path} on {resource}; fetching what it brings separately from now on"
            );
        }
    }

    pub(super) fn endpoint_missing(&self, path: &str) -> bool {
        relock(&self.missing_endpoints).contains(path)
    }

    pub(super) fn mark_missing(&self, path: &str) {
        if relock(&self.missing_endpoints).insert(path.to_string()) {
            tracing::warn!(
                stripe.path = path,
                "Stripe has no {path} in this API version; using the fields that carry the same facts"
            );
        }
    }

    /// Refused expands and missing endpoints seen so far (for `ping` and tests).
    pub(super) fn snapshot(&self) -> (Vec<String>, Vec<String>) {
        (
            relock(&self.refused_expands).iter().cloned().collect(),
            relock(&self.missing_endpoints).iter().cloned().collect(),
        )
    }
}

/// Which of `asked` an error refuses: `Some(paths)` when it is an expand refusal (the paths it
/// names, or all of them when it names none), `None` for any other error.
pub(super) fn refused_expands(error: &StripeError, asked: &[&str]) -> Option<Vec<String>> {
    let StripeError::InvalidRequest(e) = error else {
        return None;
    };
    let about_expand = e.param.as_deref().is_some_and(|p| p.starts_with("expand"))
        || e.message.to_ascii_lowercase().contains("expand");
    if e.status != 400 || !about_expand || asked.is_empty() {
        return None;
    }
    // The longest asked path the message names (`data.line_items` before `line_items`).
    let mut named: Vec<&str> = asked
        .iter()
        .copied()
        .filter(|p| {
            let bare = p.strip_prefix("data.").unwrap_or(p);
            e.message.contains(p) || e.message.contains(bare) || first_segment_named(&e.message, p)
        })
        .collect();
    named.sort_by_key(|p| std::cmp::Reverse(p.len()));
    Some(match named.first() {
        Some(p) => vec![p.to_string()],
        None => asked.iter().map(|p| p.to_string()).collect(),
    })
}

/// `latest_charge.balance_transaction` refused as `'latest_charge'`.
fn first_segment_named(message: &str, path: &str) -> bool {
    let bare = path.strip_prefix("data.").unwrap_or(path);
    let first = bare.split('.').next().unwrap_or(bare);
    message.contains(&format!("'{first}'")) || message.contains(&format!("({first})"))
}

/// True when a list endpoint answered as if it did not exist.
pub(super) fn is_missing_endpoint(error: &StripeError) -> bool {
    matches!(error, StripeError::NotFound { .. })
}
