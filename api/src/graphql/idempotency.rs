//! `idempotencyKey` on side-effecting mutations: the first answer to a keyed mutation is kept
//! for 24 hours (per tenant), and a retry with the same key and the same input gets that answer
//! back without acting again; the same key with other input is refused. A client that lost an
//! answer to a timeout can retry without creating a second key, batch or connection.
//!
//! Done once for every mutation, as a schema extension around the root mutation fields, rather
//! than in each resolver: a resolver only declares the input field. A kept answer never holds a
//! secret: an API key shown once is replaced by null before it is kept.

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextResolve, ResolveInfo,
};
use async_graphql::{ErrorExtensions as _, Request, ServerError, ServerResult, Value, Variables};
use mlc_store::{IdempotencyClaim, Store};
use sha2::Digest as _;

use super::errors::Code;
use super::schema::Viewer;

/// The input field a mutation declares to take a key.
const FIELD: &str = "idempotencyKey";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

pub struct Idempotency;

impl ExtensionFactory for Idempotency {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PerRequest {
            variables: Mutex::new(Variables::default()),
        })
    }
}

/// One request's view: its variables, to read an `input` given as a variable.
struct PerRequest {
    variables: Mutex<Variables>,
}

fn refuse(info: &ResolveInfo<'_>, message: &str) -> ServerError {
    let e = async_graphql::Error::new(message).extend_with(|_, e| {
        e.set("code", Code::BadUserInput.as_str());
    });
    e.into_server_error(info.field.name.pos)
}

/// Any string that is an API key (the only secret a mutation ever answers with) becomes null.
fn without_secrets(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.starts_with(mlc_store::API_KEY_PREFIX) => {
            *v = serde_json::Value::Null;
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(without_secrets),
        serde_json::Value::Object(map) => map.values_mut().for_each(without_secrets),
        _ => {}
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for PerRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        if let Ok(mut v) = self.variables.lock() {
            *v = request.variables.clone();
        }
        next.run(ctx, request).await
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type != "Mutation" {
            return next.run(ctx, info).await;
        }
        let (Some(viewer), Some(store)) = (ctx.data_opt::<Viewer>(), ctx.data_opt::<Store>())
        else {
            return next.run(ctx, info).await;
        };
        let Some(arg) = info.field.get_argument("input") else {
            return next.run(ctx, info).await;
        };
        let variables = self.variables.lock().map(|v| v.clone()).unwrap_or_default();
        let Ok(input) = arg
            .node
            .clone()
            .into_const_with(|name| variables.get(&name).cloned().ok_or(()))
        else {
            // An unbound variable: the resolver reports it as usual.
            return next.run(ctx, info).await;
        };
        let key = match &input {
            Value::Object(map) => match map.get(FIELD) {
                Some(Value::String(k)) => k.clone(),
                _ => return next.run(ctx, info).await,
            },
            _ => return next.run(ctx, info).await,
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(refuse(
                &info,
                &format!("`{FIELD}` is 1 to {MAX_KEY_LEN} characters"),
            ));
        }
        let hash = {
            let mut h = sha2::Sha256::new();
            h.update(info.name.as_bytes());
            h.update([0]);
            h.update(input.into_json().unwrap_or_default().to_string().as_bytes());
            hex::encode(h.finalize())
        };
        let tenant = store.tenant(&viewer.tenant);
        let internal = |e: mlc_store::StoreError| {
            tracing::error!("idempotency key: {e}");
            super::errors::gql_error(
                Code::Internal,
                "internal error; the service log has the details",
            )
            .into_server_error(info.field.name.pos)
        };
        match tenant
            .claim_idempotency_key(&key, &hash)
            .await
            .map_err(internal)?
        {
            IdempotencyClaim::Replay(kept) => {
                let json: serde_json::Value = serde_json::from_str(&kept).unwrap_or_default();
                return Ok(Value::from_json(json).ok());
            }
            IdempotencyClaim::InProgress => {
                return Err(refuse(
                    &info,
                    "a request with this idempotencyKey is still running: retry in a moment",
                ));
            }
            IdempotencyClaim::Mismatch => {
                return Err(refuse(
                    &info,
                    "this idempotencyKey was used for a different request (keys are kept 24 \
                     hours): use a new key for a new request",
                ));
            }
            IdempotencyClaim::New => {}
        }
        let pos = info.field.name.pos;
        let answer = next.run(ctx, info).await;
        match &answer {
            Ok(value) => {
                let mut json = value
                    .clone()
                    .and_then(|v| v.into_json().ok())
                    .unwrap_or_default();
                without_secrets(&mut json);
                if let Err(e) = tenant
                    .complete_idempotency_key(&key, &json.to_string())
                    .await
                {
                    // The mutation happened; only its replay is lost (a retry then says "still
                    // running" until the key expires). Logged, not failed.
                    tracing::error!("idempotency key: cannot keep the answer: {e}");
                }
            }
            Err(_) => {
                if let Err(e) = tenant.release_idempotency_key(&key).await {
                    tracing::error!("idempotency key: cannot release after a failure: {e} ({pos})");
                }
            }
        }
        answer
    }
}
