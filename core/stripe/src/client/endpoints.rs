//! Webhook endpoints: listing them and making one (onboarding registers the connection's
//! webhook URL for the customer instead of asking them to do it in Stripe's dashboard). Stripe
//! shows an endpoint's signing secret only in the answer that created it.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

use super::{Query, StripeClient, StripeError};

/// One page of the endpoint list (its items are not `StripeModel`s: no raw copy is kept).
#[derive(Deserialize)]
struct EndpointPage {
    data: Vec<WebhookEndpoint>,
    has_more: bool,
}

/// A webhook endpoint as Stripe lists it (never with its secret).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    #[serde(default)]
    pub enabled_events: Vec<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub status: Option<String>,
}

/// An endpoint just made, with its signing secret (shown this once).
#[derive(Debug)]
pub struct CreatedWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: SecretString,
}

const PATH: &str = "/v1/webhook_endpoints";

impl StripeClient {
    /// Every webhook endpoint of the account (all pages).
    pub async fn list_webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>, StripeError> {
        let mut out: Vec<WebhookEndpoint> = Vec::new();
        loop {
            let mut q = Query::new();
            q.push("limit", "100");
            if let Some(last) = out.last() {
                q.push("starting_after", last.id.clone());
            }
            let body = self.get_text(PATH, &q).await?;
            let page: EndpointPage =
                serde_json::from_str(&body).map_err(|source| StripeError::Decode {
                    path: PATH.to_string(),
                    source: crate::models::ModelError::Malformed {
                        what: "webhook endpoint list",
                        source,
                    },
                })?;
            let more = page.has_more && !page.data.is_empty();
            out.extend(page.data);
            if !more {
                return Ok(out);
            }
        }
    }

    /// Makes an endpoint delivering `events` to `url`, tagged with `metadata`.
    pub async fn create_webhook_endpoint(
        &self,
        url: &str,
        events: &[&str],
        metadata: &BTreeMap<String, String>,
    ) -> Result<CreatedWebhookEndpoint, StripeError> {
        let mut form = Query::new();
        form.push("url", url.to_string());
        for e in events {
            form.push("enabled_events[]", e.to_string());
        }
        for (k, v) in metadata {
            form.push(format!("metadata[{k}]"), v.clone());
        }
        let body = self.post_form(PATH, &form, None).await?;
        let decode = |source: serde_json::Error| StripeError::Decode {
            path: PATH.to_string(),
            source: crate::models::ModelError::Malformed {
                what: "webhook endpoint",
                source,
            },
        };
        let value: serde_json::Value = serde_json::from_str(&body).map_err(decode)?;
        let secret = value
            .get("secret")
            .and_then(|s| s.as_str())
            .map(|s| SecretString::from(s.to_string()));
        let endpoint: WebhookEndpoint = serde_json::from_value(value).map_err(decode)?;
        let Some(secret) = secret else {
            return Err(decode(serde::de::Error::custom(
                "the created endpoint's answer has no signing secret",
            )));
        };
        Ok(CreatedWebhookEndpoint { endpoint, secret })
    }
}
