//! Writes: create and update products and customers (the NetSuite → Stripe reference sync).
//!
//! Bodies are form-encoded with Stripe's bracket syntax (`metadata[netsuite_item_id]=42`). Every
//! POST carries an `Idempotency-Key` derived from what it writes (method, path, body and an
//! optional caller scope), so a sync that is retried, or re-run after a crash, within Stripe's
//! key retention (at least 24 h) gets Stripe's saved answer instead of a second object.
//!
//! Retries: because every request carries its key, repeating it cannot apply it twice (Stripe
//! replays the first result, or answers 409 while the first is still running), so 429, 409, 5xx
//! and network failures are retried as for reads, and `Stripe-Should-Retry` wins as in Stripe's
//! SDKs. A 400 `idempotency_error` (same key, different parameters) is not retried.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{Query, StripeClient, StripeError, object_path};
use crate::models::{Customer, Product, StripeModel};

/// Fields of a product to create or update; `None` leaves a field unset (create) or unchanged
/// (update). `name` is required on create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductParams {
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    /// Keys to set; an empty value removes the key (Stripe's rule). Other keys are kept.
    pub metadata: BTreeMap<String, String>,
    /// Mixed into the `Idempotency-Key` (e.g. the version of the source record): the same values
    /// written again after they changed in between must be a new request, not a replay of the
    /// first one. `None`: the key depends on the body alone.
    pub idempotency_scope: Option<String>,
}

/// Fields of a customer to create or update; `None` leaves a field unset (create) or unchanged
/// (update). An empty string clears a field on update (Stripe's rule).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerParams {
    pub name: Option<String>,
    pub email: Option<String>,
    pub description: Option<String>,
    pub phone: Option<String>,
    /// Keys to set; an empty value removes the key. Other keys are kept.
    pub metadata: BTreeMap<String, String>,
    /// See [`ProductParams::idempotency_scope`].
    pub idempotency_scope: Option<String>,
}

impl ProductParams {
    fn form(&self) -> Query {
        let mut q = Query::new();
        push_opt(&mut q, "name", &self.name);
        push_opt(&mut q, "description", &self.description);
        if let Some(a) = self.active {
            q.push("active", a.to_string());
        }
        push_metadata(&mut q, &self.metadata);
        q
    }
}

impl CustomerParams {
    fn form(&self) -> Query {
        let mut q = Query::new();
        push_opt(&mut q, "name", &self.name);
        push_opt(&mut q, "email", &self.email);
        push_opt(&mut q, "description", &self.description);
        push_opt(&mut q, "phone", &self.phone);
        push_metadata(&mut q, &self.metadata);
        q
    }
}

fn push_opt(q: &mut Query, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        q.push(key, v.clone());
    }
}

fn push_metadata(q: &mut Query, metadata: &BTreeMap<String, String>) {
    for (k, v) in metadata {
        q.push(format!("metadata[{k}]"), v.clone());
    }
}

/// The `Idempotency-Key` of a write: a digest of what it writes, so the same write gets the same
/// key on every attempt and in every process, and a different write never shares one.
pub fn idempotency_key(method: &str, path: &str, body: &str, scope: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [method, path, body, scope.unwrap_or("")] {
        h.update(part.as_bytes());
        // A separator no part can contain keeps ("a","bc") and ("ab","c") apart.
        h.update([0u8]);
    }
    format!("mlc-{}", hex::encode(&h.finalize()[..20]))
}

impl StripeClient {
    /// `POST /v1/products`: creates a product (`name` required).
    pub async fn create_product(&self, params: &ProductParams) -> Result<Product, StripeError> {
        if params.name.as_deref().is_none_or(str::is_empty) {
            return Err(StripeError::InvalidArgument(
                "a product needs a non-empty name".into(),
            ));
        }
        self.post_model(
            "/v1/products",
            &params.form(),
            params.idempotency_scope.as_deref(),
        )
        .await
    }

    /// `POST /v1/products/{id}`: updates the given fields of a product.
    pub async fn update_product(
        &self,
        id: &str,
        params: &ProductParams,
    ) -> Result<Product, StripeError> {
        if params.name.as_deref() == Some("") {
            return Err(StripeError::InvalidArgument(
                "a product name cannot be set to empty".into(),
            ));
        }
        self.post_model(
            &object_path("/v1/products", id)?,
            &params.form(),
            params.idempotency_scope.as_deref(),
        )
        .await
    }

    /// `POST /v1/customers`: creates a customer.
    pub async fn create_customer(&self, params: &CustomerParams) -> Result<Customer, StripeError> {
        self.post_model(
            "/v1/customers",
            &params.form(),
            params.idempotency_scope.as_deref(),
        )
        .await
    }

    /// `POST /v1/customers/{id}`: updates the given fields of a customer.
    pub async fn update_customer(
        &self,
        id: &str,
        params: &CustomerParams,
    ) -> Result<Customer, StripeError> {
        self.post_model(
            &object_path("/v1/customers", id)?,
            &params.form(),
            params.idempotency_scope.as_deref(),
        )
        .await
    }

    /// `POST` a form and parse the answer as a model.
    async fn post_model<T: StripeModel>(
        &self,
        path: &str,
        form: &Query,
        scope: Option<&str>,
    ) -> Result<T, StripeError> {
        let body = self.post_form(path, form, scope).await?;
        T::from_json(&body).map_err(|source| StripeError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// `POST` with auth, version, rate limiting, an `Idempotency-Key` and retries; returns the
    /// 2xx body.
    pub async fn post_form(
        &self,
        path: &str,
        form: &Query,
        scope: Option<&str>,
    ) -> Result<String, StripeError> {
        let config = &self.inner.config;
        let url = format!("{}{}", config.base_url.as_str().trim_end_matches('/'), path);
        let body = form.encode();
        let key = idempotency_key("POST", path, &body, scope);
        self.send_with_retries(path, "write", || {
            self.inner
                .http
                .post(&url)
                .header("Idempotency-Key", &key)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_use_brackets_and_keys_follow_the_content() {
        let mut p = ProductParams {
            name: Some("Pro plan".into()),
            ..ProductParams::default()
        };
        p.metadata.insert("netsuite_item_id".into(), "42".into());
        assert_eq!(
            p.form().encode(),
            "name=Pro%20plan&metadata[netsuite_item_id]=42"
        );
        let body = p.form().encode();
        let k1 = idempotency_key("POST", "/v1/products", &body, None);
        assert_eq!(k1, idempotency_key("POST", "/v1/products", &body, None));
        assert!(k1.len() <= 255 && k1.starts_with("mlc-"));
        assert_ne!(
            k1,
            idempotency_key("POST", "/v1/products", &body, Some("v2"))
        );
        assert_ne!(
            k1,
            idempotency_key("POST", "/v1/products/prod_1", &body, None)
        );
    }
}
