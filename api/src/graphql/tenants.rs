//! Self-hosted administration: the operator token from the configuration (`admin.token`) may
//! create tenants, each with its first owner key, and do nothing inside a tenant (it carries
//! no tenant). Tenants' own keys cannot create tenants.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use mlc_core::TenantId;
use mlc_store::{ApiKeyRole, StoreError};

use super::errors::{Code, gql_error, internal, store};
use super::mutation::{ApiKey, UserError, UserErrorCode, user_error};

/// In a request's data when it carries the operator token.
#[derive(Debug, Clone, Copy)]
pub struct ServiceOperator;

#[derive(Default)]
pub struct TenantMutation;

#[derive(InputObject)]
pub struct TenantCreateInput {
    /// The tenant's ID: lower-case letters, digits, `_` and `-` (e.g. `acme`).
    pub id: String,
    /// A name for people; default: the ID.
    pub name: Option<String>,
    /// The name of the owner key made with it (default `owner`).
    pub owner_key_name: Option<String>,
}

#[derive(SimpleObject)]
pub struct TenantCreatePayload {
    pub tenant_id: Option<String>,
    /// The tenant's first owner key; with it the tenant makes its connections and other keys.
    pub owner_key: Option<ApiKey>,
    /// That key's secret, shown this once (stored only as a hash).
    pub owner_key_secret: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[Object]
impl TenantMutation {
    /// Creates a tenant with an owner API key. Only with the operator token
    /// (`Authorization: Bearer <admin.token>`).
    async fn tenant_create(
        &self,
        ctx: &Context<'_>,
        input: TenantCreateInput,
    ) -> Result<TenantCreatePayload> {
        if ctx.data::<ServiceOperator>().is_err() {
            return Err(gql_error(
                Code::Forbidden,
                "only the service's operator token (admin.token) can create tenants",
            ));
        }
        let failed = |e: UserError| {
            Ok(TenantCreatePayload {
                tenant_id: None,
                owner_key: None,
                owner_key_secret: None,
                user_errors: vec![e],
            })
        };
        let Ok(id) = TenantId::parse(input.id.trim()) else {
            return failed(user_error(
                "id",
                UserErrorCode::Invalid,
                format!(
                    "`{}` is not a tenant ID: lower-case letters, digits, `_` and `-`",
                    input.id
                ),
            ));
        };
        let name = input
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(id.as_str())
            .to_string();
        let store = store(ctx)?;
        let scope = match store.create_tenant(&id, &name).await {
            Ok(scope) => scope,
            Err(StoreError::AlreadyExists(_)) => {
                return failed(user_error(
                    "id",
                    UserErrorCode::AlreadyExists,
                    format!("a tenant `{id}` exists already"),
                ));
            }
            Err(e) => return Err(internal(e)),
        };
        let key_name = input
            .owner_key_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("owner");
        let made = store
            .tenant(&scope)
            .create_api_key(key_name, ApiKeyRole::Owner)
            .await
            .map_err(internal)?;
        use mlc_core::ExposeSecret as _;
        Ok(TenantCreatePayload {
            tenant_id: Some(id.to_string()),
            owner_key_secret: Some(made.secret.expose_secret().to_string()),
            owner_key: Some(made.info.into()),
            user_errors: vec![],
        })
    }
}
