//! Product and customer mappings: what a connection maps (Stripe product → NetSuite item, Stripe
//! customer → NetSuite customer), the products it has seen without an item (with the sales
//! waiting for them), and the mutations that change mappings. They act through
//! `mlc_service::mappings`, as the `mappings` command does, so each change is audited and
//! releases the jobs waiting for it wherever it is made.

use async_graphql::connection::{Connection as Page, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use mlc_service::console::{Console, MoneyView};
use mlc_store::{ApiKeyRole, ConnectionScope, Link, Store};

use super::errors::{Code, gql_error, internal, store};
use super::mutation::{UserError, UserErrorCode, own_connection, require, user_error, wake};
use super::schema::time;

/// An amount of money: the exact decimal in the currency's exponent (never a float).
#[derive(SimpleObject, Clone)]
pub struct MoneyAmount {
    /// Exact decimal, e.g. `1234.50` (`1234` in JPY, `1.234` in KWD).
    pub amount: String,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// `1,234.50 USD`, for people.
    pub display: String,
}

impl From<MoneyView> for MoneyAmount {
    fn from(m: MoneyView) -> Self {
        MoneyAmount {
            amount: m.amount,
            currency: m.currency,
            display: m.display,
        }
    }
}

/// A Stripe object mapped to a NetSuite record.
#[derive(SimpleObject)]
pub struct Mapping {
    /// `prod_…` or `cus_…`.
    pub stripe_id: String,
    /// The NetSuite record's internal ID (an item or a customer).
    pub netsuite_id: String,
    /// How it was made: `manual` (set by a person), `created`, `externalid`, `custom_field`, …
    pub source: String,
    pub updated_at: String,
}

impl From<Link> for Mapping {
    fn from(l: Link) -> Self {
        Mapping {
            stripe_id: l.stripe_id,
            netsuite_id: l.netsuite_internal_id,
            source: l.source,
            updated_at: time(l.updated_at),
        }
    }
}

/// A Stripe product seen without a NetSuite item, and the sales waiting for one.
#[derive(SimpleObject)]
pub struct UnmappedProduct {
    pub stripe_product_id: String,
    pub name: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
    /// Events waiting for this product's mapping (they post by themselves once it is set).
    pub waiting_event_ids: Vec<String>,
    /// What those sales amount to, per currency, as Stripe sent them.
    pub waiting_amounts: Vec<MoneyAmount>,
}

pub type MappingPage = Page<OpaqueCursor<String>, Mapping, EmptyFields, EmptyFields>;

/// `first` checked, and `after` decoded to the last key seen (a position only: the page is
/// always read inside the connection's own scope).
fn page_args(first: Option<i32>, after: Option<String>) -> Result<(usize, Option<String>)> {
    let first = super::schema::page_size(first)?;
    let after = after
        .map(|c| {
            <OpaqueCursor<String> as async_graphql::connection::CursorType>::decode_cursor(&c)
                .map(|c| c.0)
                .map_err(|_| gql_error(Code::BadUserInput, "`after` is not a cursor from this API"))
        })
        .transpose()?;
    Ok((first, after))
}

fn mapping_page(links: Vec<Link>, first: usize, had_after: bool) -> MappingPage {
    let has_next = links.len() > first;
    let mut page = Page::new(had_after, has_next);
    page.edges.extend(
        links
            .into_iter()
            .take(first)
            .map(|l| Edge::new(OpaqueCursor(l.stripe_id.clone()), Mapping::from(l))),
    );
    page
}

/// Which mappings a page lists.
#[derive(Clone, Copy)]
pub enum Mappings {
    /// Stripe product → NetSuite item, by product ID.
    Products,
    /// Stripe customer → NetSuite customer, by customer ID.
    Customers,
}

/// A page of the connection's mappings of one kind.
pub async fn mappings(
    store: &Store,
    scope: &ConnectionScope,
    which: Mappings,
    first: Option<i32>,
    after: Option<String>,
) -> Result<MappingPage> {
    let (first, after) = page_args(first, after)?;
    let connection = store.scoped(scope);
    let limit = first as i64 + 1;
    let links = match which {
        Mappings::Products => connection.page_item_links(after.as_deref(), limit).await,
        Mappings::Customers => {
            connection
                .page_customer_links(after.as_deref(), limit)
                .await
        }
    }
    .map_err(internal)?;
    Ok(mapping_page(links, first, after.is_some()))
}

/// A page of the products seen without an item, by product ID.
pub async fn unmapped_products(
    store: &Store,
    scope: &ConnectionScope,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Page<OpaqueCursor<String>, UnmappedProduct, EmptyFields, EmptyFields>> {
    let (first, after) = page_args(first, after)?;
    let all = Console::new(store.scoped(scope), None, jiff::tz::TimeZone::UTC)
        .unmapped()
        .await
        .map_err(internal)?;
    let mut rest: Vec<_> = all
        .into_iter()
        .filter(|u| {
            after
                .as_deref()
                .is_none_or(|a| u.stripe_product_id.as_str() > a)
        })
        .collect();
    rest.sort_by(|a, b| a.stripe_product_id.cmp(&b.stripe_product_id));
    let has_next = rest.len() > first;
    let mut page = Page::new(after.is_some(), has_next);
    page.edges.extend(rest.into_iter().take(first).map(|u| {
        Edge::new(
            OpaqueCursor(u.stripe_product_id.clone()),
            UnmappedProduct {
                stripe_product_id: u.stripe_product_id,
                name: u.name,
                first_seen_at: time(u.first_seen),
                last_seen_at: time(u.last_seen),
                waiting_event_ids: u.waiting_events,
                waiting_amounts: u.waiting_amounts.into_iter().map(Into::into).collect(),
            },
        )
    }));
    Ok(page)
}

#[derive(Default)]
pub struct MappingMutation;

#[derive(InputObject)]
pub struct ProductMappingRemoveInput {
    pub connection_id: ID,
    /// `prod_…`
    pub stripe_product_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct ProductMappingRemovePayload {
    /// Whether there was a mapping to remove (the item is looked up in NetSuite again on the
    /// product's next sale).
    pub removed: bool,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct CustomerMappingSetInput {
    pub connection_id: ID,
    /// `cus_…`
    pub stripe_customer_id: String,
    /// The NetSuite customer's internal ID (digits).
    pub netsuite_customer_id: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct CustomerMappingSetPayload {
    pub mapping: Option<Mapping>,
    /// Jobs that waited on this customer and run now.
    pub released_jobs: i64,
    pub user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct MappingsImportInput {
    pub connection_id: ID,
    /// CSV text with the header `stripe_product_id,netsuite_item_id`, one mapping per line.
    pub csv: String,
    /// Makes a retry safe: the same key with the same input within 24 hours gets the first
    /// answer back, and nothing is done twice.
    pub idempotency_key: Option<String>,
}

/// One CSV line that was not applied.
#[derive(SimpleObject)]
pub struct ImportLineError {
    /// 1-based line number (the header is line 1).
    pub line: i32,
    pub message: String,
}

#[derive(SimpleObject)]
pub struct MappingsImportPayload {
    /// Mappings applied (each audited as `mapping_set`).
    pub applied: i32,
    /// Sales that waited for the applied mappings and run now.
    pub released_jobs: i64,
    /// The lines not applied, with why; they changed nothing.
    pub line_errors: Vec<ImportLineError>,
    pub user_errors: Vec<UserError>,
}

/// Largest CSV accepted by `mappingsImport` (the request body limit is larger).
const MAX_CSV_LINES: usize = 5_000;

#[Object]
impl MappingMutation {
    /// Removes a product's mapping. Audited as `mapping_removed`. Operator or owner.
    async fn product_mapping_remove(
        &self,
        ctx: &Context<'_>,
        input: ProductMappingRemoveInput,
    ) -> Result<ProductMappingRemovePayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let failed = |e| {
            Ok(ProductMappingRemovePayload {
                removed: false,
                user_errors: vec![e],
            })
        };
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => return failed(e),
        };
        let product = input.stripe_product_id.trim();
        if mlc_core::StripeId::parse(mlc_core::StripeIdKind::Product, product).is_err() {
            return failed(user_error(
                "stripeProductId",
                UserErrorCode::Invalid,
                format!("`{product}` is not a Stripe product ID (prod_…)"),
            ));
        }
        let removed = mlc_service::mappings::remove_mapping(&store(ctx)?.scoped(&scope), product)
            .await
            .map_err(internal)?;
        Ok(ProductMappingRemovePayload {
            removed,
            user_errors: if removed {
                vec![]
            } else {
                vec![user_error(
                    "stripeProductId",
                    UserErrorCode::NotFound,
                    format!("`{product}` has no mapping on this connection"),
                )]
            },
        })
    }

    /// Maps a Stripe customer to an existing NetSuite customer; what waited on it posts now.
    /// Audited as `customer_mapping_set`. Operator or owner.
    async fn customer_mapping_set(
        &self,
        ctx: &Context<'_>,
        input: CustomerMappingSetInput,
    ) -> Result<CustomerMappingSetPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let failed = |errors| {
            Ok(CustomerMappingSetPayload {
                mapping: None,
                released_jobs: 0,
                user_errors: errors,
            })
        };
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => return failed(vec![e]),
        };
        let (customer, ns) = (
            input.stripe_customer_id.trim(),
            input.netsuite_customer_id.trim(),
        );
        let mut errors = vec![];
        if mlc_core::StripeId::parse(mlc_core::StripeIdKind::Customer, customer).is_err() {
            errors.push(user_error(
                "stripeCustomerId",
                UserErrorCode::Invalid,
                format!("`{customer}` is not a Stripe customer ID (cus_…)"),
            ));
        }
        if mlc_core::NetSuiteInternalId::parse(ns).is_err() {
            errors.push(user_error(
                "netsuiteCustomerId",
                UserErrorCode::Invalid,
                format!("`{ns}` is not a NetSuite internal ID (digits)"),
            ));
        }
        if !errors.is_empty() {
            return failed(errors);
        }
        let connection = store(ctx)?.scoped(&scope);
        let released = mlc_service::mappings::set_customer_mapping(&connection, customer, ns)
            .await
            .map_err(internal)?;
        if released > 0 {
            wake(ctx);
        }
        Ok(CustomerMappingSetPayload {
            mapping: Some(Mapping {
                stripe_id: customer.to_string(),
                netsuite_id: ns.to_string(),
                source: "manual".into(),
                updated_at: time(mlc_core::now_millis()),
            }),
            released_jobs: released as i64,
            user_errors: vec![],
        })
    }

    /// Applies product mappings from CSV (`stripe_product_id,netsuite_item_id`), as `mappings
    /// import` does: every line is checked first, the good ones are applied (each audited, each
    /// releasing its waiting sales) and the bad ones reported by line. Operator or owner.
    async fn mappings_import(
        &self,
        ctx: &Context<'_>,
        input: MappingsImportInput,
    ) -> Result<MappingsImportPayload> {
        let viewer = require(ctx, ApiKeyRole::Operator)?;
        let failed = |e| {
            Ok(MappingsImportPayload {
                applied: 0,
                released_jobs: 0,
                line_errors: vec![],
                user_errors: vec![e],
            })
        };
        let scope = match own_connection(ctx, viewer, &input.connection_id).await? {
            Ok((_, scope)) => scope,
            Err(e) => return failed(e),
        };
        if input.csv.lines().count() > MAX_CSV_LINES {
            return failed(user_error(
                "csv",
                UserErrorCode::Invalid,
                format!("at most {MAX_CSV_LINES} lines per import: split the file"),
            ));
        }
        let report = match mlc_service::mappings::import_csv(
            &store(ctx)?.scoped(&scope),
            &input.csv,
        )
        .await
        {
            Ok(r) => r,
            Err(e @ mlc_service::mappings::ImportError::BadHeader(_)) => {
                return failed(user_error("csv", UserErrorCode::Invalid, e.to_string()));
            }
            Err(e) => return Err(internal(e)),
        };
        if report.released > 0 {
            wake(ctx);
        }
        Ok(MappingsImportPayload {
            applied: report.applied.len() as i32,
            released_jobs: report.released as i64,
            line_errors: report
                .bad
                .into_iter()
                .map(|b| ImportLineError {
                    line: b.line as i32,
                    message: b.reason,
                })
                .collect(),
            user_errors: vec![],
        })
    }
}
