//! Top-level GraphQL errors carry `extensions.code`, one of a fixed set, so a client can act on
//! them without reading messages. Business failures go in a payload's `userErrors` instead.

use async_graphql::ErrorExtensions as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No credential, or one that is unknown or revoked.
    Unauthenticated,
    /// The credential's role may not do this.
    #[allow(dead_code)] // used by the mutations that check roles
    Forbidden,
    /// Nothing by that ID in the viewer's tenant (another tenant's objects included).
    #[allow(dead_code)]
    NotFound,
    BadUserInput,
    #[allow(dead_code)]
    RateLimited,
    /// Something failed inside; the message says nothing of what.
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::RateLimited => "RATE_LIMITED",
            Code::Internal => "INTERNAL",
        }
    }
}

pub fn gql_error(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

/// Logs a failure inside and gives the client an INTERNAL error that names nothing of it.
pub fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!("GraphQL resolver failed: {e}");
    gql_error(
        Code::Internal,
        "internal error; the service log has the details",
    )
}

/// The store the schema was built with.
pub fn store<'a>(ctx: &async_graphql::Context<'a>) -> async_graphql::Result<&'a mlc_store::Store> {
    ctx.data::<mlc_store::Store>()
        .map_err(|_| gql_error(Code::Internal, "internal error"))
}
