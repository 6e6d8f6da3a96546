//! People through GraphQL: `signUp`, `signIn`, `signInWithLink`, `signOut`, `memberInvite`,
//! `invitationAccept`, and `members`. A session is an HttpOnly, SameSite=Strict cookie
//! (`mlc_sid`; Secure when the service is public over HTTPS); a mutation sent with it must carry
//! the session's CSRF token in `X-CSRF-Token` (the sign-in answer gives it to the page).
//! `signUp`, `signIn`, `signInWithLink` and `invitationAccept` are the only operations that run
//! without a credential.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use mlc_service::accounts::{self, AccountError, NewSession, SignupPolicy};
use mlc_store::ApiKeyRole;
use secrecy::{ExposeSecret as _, SecretString};

use super::errors::{Code, gql_error, internal, store};
use super::mutation::{UserError, UserErrorCode, require, user_error};
use super::schema::{Role, Viewer, time};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mlc_sid";
/// The header a cookie-authenticated mutation carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The operations that run without a credential.
pub const ANONYMOUS_FIELDS: [&str; 4] = ["signUp", "signIn", "signInWithLink", "invitationAccept"];

/// How accounts are offered here (from the configuration).
#[derive(Clone, Copy)]
pub struct AccountPolicy {
    pub signup: SignupPolicy,
    /// Set `Secure` on the session cookie (the service is public over HTTPS).
    pub secure_cookie: bool,
}

/// The hash of the session token a request came with (for `signOut`).
#[derive(Clone)]
pub struct SessionTokenHash(pub String);

/// The address a request came from, for the sign-in slow-down.
#[derive(Clone, Copy)]
pub struct ClientAddr(pub Option<std::net::IpAddr>);

/// The sign-in slow-down: per account and per address.
#[derive(Clone)]
pub struct SignInLimits {
    pub per_account: std::sync::Arc<governor::DefaultKeyedRateLimiter<String>>,
    pub per_address: std::sync::Arc<governor::DefaultKeyedRateLimiter<std::net::IpAddr>>,
}

impl SignInLimits {
    /// 5 attempts per account and 20 per address at once, refilled one a minute and one every
    /// 3 seconds: a person retyping is never held up, a guesser is slowed to a crawl.
    pub fn new() -> Self {
        use governor::Quota;
        use std::num::NonZeroU32;
        let per = |burst: u32, every: std::time::Duration| {
            Quota::with_period(every)
                .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
        };
        SignInLimits {
            per_account: std::sync::Arc::new(governor::RateLimiter::keyed(per(
                5,
                std::time::Duration::from_secs(60),
            ))),
            per_address: std::sync::Arc::new(governor::RateLimiter::keyed(per(
                20,
                std::time::Duration::from_secs(3),
            ))),
        }
    }

    /// Takes one attempt, or says how long to wait.
    fn admit(&self, email: &str, addr: Option<std::net::IpAddr>) -> std::result::Result<(), u64> {
        use governor::clock::Clock as _;
        let now = governor::clock::DefaultClock::default().now();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(now).as_secs().max(1);
        self.per_account
            .check_key(&email.trim().to_lowercase())
            .map_err(wait)?;
        if let Some(a) = addr {
            self.per_address.check_key(&a).map_err(wait)?;
        }
        Ok(())
    }
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits::new()
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    /// 12 to 256 characters; not a common or guessable one.
    pub password: String,
    /// Your company's ID here: lower-case letters, digits, `_` and `-` (e.g. `acme`).
    pub company_id: String,
    pub company_name: String,
}

#[derive(InputObject)]
pub struct SignInInput {
    pub email: String,
    pub password: String,
    /// Which of your companies to open (default: the first you joined).
    pub company_id: Option<String>,
}

#[derive(InputObject)]
pub struct MemberInviteInput {
    pub email: String,
    pub role: Role,
}

#[derive(InputObject)]
pub struct InvitationAcceptInput {
    /// The token from the invitation link.
    pub token: String,
    /// Your password: a new one when the invited email has no account yet, else your own.
    pub password: String,
}

#[derive(InputObject)]
pub struct SignInWithLinkInput {
    /// The token from the sign-in link (`…/app/#/link?token=…`).
    pub token: String,
}

/// A session begun: who, where, and the CSRF token the page sends with its mutations.
#[derive(SimpleObject)]
pub struct SessionPayload {
    pub tenant_id: Option<String>,
    pub role: Option<Role>,
    pub email: Option<String>,
    /// Send it as `X-CSRF-Token` with every mutation made with the session cookie.
    pub csrf_token: Option<String>,
    pub expires_at: Option<String>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject)]
pub struct SignOutPayload {
    pub signed_out: bool,
}

#[derive(SimpleObject)]
pub struct MemberInvitePayload {
    /// The invitation's token, shown once: send it to the person (the dashboard makes it a
    /// link). It works once, for 7 days.
    pub token: Option<String>,
    pub expires_at: Option<String>,
    pub user_errors: Vec<UserError>,
}

/// A member of the tenant.
#[derive(SimpleObject)]
pub struct Member {
    pub email: String,
    pub role: Role,
    pub joined_at: String,
}

fn cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn account_error(e: AccountError) -> Result<SessionPayload> {
    let (field, code) = match &e {
        AccountError::Invalid { field, .. } => (*field, UserErrorCode::Invalid),
        AccountError::Taken { field, .. } => (*field, UserErrorCode::AlreadyExists),
        AccountError::BadCredentials => ("password", UserErrorCode::Invalid),
        AccountError::SignupNotOpen(_) => ("email", UserErrorCode::NotConfigured),
        AccountError::Store(_) | AccountError::Hash(_) => return Err(internal(e)),
    };
    Ok(SessionPayload {
        tenant_id: None,
        role: None,
        email: None,
        csrf_token: None,
        expires_at: None,
        user_errors: vec![user_error(field, code, e.to_string())],
    })
}

/// Sets the session cookie and answers with what the page needs.
fn session_answer(ctx: &Context<'_>, s: NewSession) -> SessionPayload {
    let secure = ctx
        .data::<AccountPolicy>()
        .map(|p| p.secure_cookie)
        .unwrap_or(false);
    ctx.append_http_header(
        "set-cookie",
        cookie(
            SESSION_COOKIE,
            s.token.expose_secret(),
            accounts::SESSION_TTL_MS / 1000,
            secure,
        ),
    );
    SessionPayload {
        tenant_id: Some(s.tenant.tenant_id().to_string()),
        role: Some(s.role.into()),
        email: Some(s.email),
        csrf_token: Some(s.csrf.expose_secret().to_string()),
        expires_at: Some(time(s.expires_at)),
        user_errors: vec![],
    }
}

fn policy(ctx: &Context<'_>) -> AccountPolicy {
    ctx.data::<AccountPolicy>()
        .copied()
        .unwrap_or(AccountPolicy {
            signup: SignupPolicy::Closed,
            secure_cookie: false,
        })
}

#[Object]
impl AccountMutation {
    /// Creates your company (a tenant) with you as its owner, and signs you in. Open, invite-only
    /// or closed by configuration (`admin.signup`).
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> Result<SessionPayload> {
        let password = SecretString::from(input.password);
        match accounts::sign_up(
            store(ctx)?,
            policy(ctx).signup,
            &input.email,
            &password,
            &input.company_id,
            &input.company_name,
        )
        .await
        {
            Ok(s) => Ok(session_answer(ctx, s)),
            Err(e) => account_error(e),
        }
    }

    /// Signs in (a session cookie for 12 hours). Repeated failures are slowed down, per account
    /// and per address (RATE_LIMITED).
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> Result<SessionPayload> {
        let addr = ctx.data::<ClientAddr>().ok().and_then(|a| a.0);
        if let Ok(limits) = ctx.data::<SignInLimits>()
            && let Err(secs) = limits.admit(&input.email, addr)
        {
            return Err(gql_error(
                Code::RateLimited,
                format!("too many sign-in attempts: wait {secs} s and try again"),
            ));
        }
        let password = SecretString::from(input.password);
        match accounts::sign_in(
            store(ctx)?,
            &input.email,
            &password,
            input.company_id.as_deref(),
        )
        .await
        {
            Ok(s) => Ok(session_answer(ctx, s)),
            Err(e) => account_error(e),
        }
    }

    /// Signs in with a one-time sign-in link (made by an operator's tool, e.g. `ml-connector
    /// demo --dashboard`): no password; the link works once, for 15 minutes. A used, expired or
    /// unknown link is a user error on `token` saying which.
    async fn sign_in_with_link(
        &self,
        ctx: &Context<'_>,
        input: SignInWithLinkInput,
    ) -> Result<SessionPayload> {
        let token = SecretString::from(input.token);
        match accounts::sign_in_with_link(store(ctx)?, &token).await {
            Ok(s) => Ok(session_answer(ctx, s)),
            Err(e) => account_error(e),
        }
    }

    /// Ends this session and clears its cookie.
    async fn sign_out(&self, ctx: &Context<'_>) -> Result<SignOutPayload> {
        let Ok(token) = ctx.data::<SessionTokenHash>() else {
            return Err(gql_error(
                Code::BadUserInput,
                "signOut ends a dashboard session: this request has none (an API key is revoked \
                 with apiKeyRevoke)",
            ));
        };
        let ended = store(ctx)?.end_session(&token.0).await.map_err(internal)?;
        ctx.append_http_header(
            "set-cookie",
            cookie(SESSION_COOKIE, "", 0, policy(ctx).secure_cookie),
        );
        Ok(SignOutPayload { signed_out: ended })
    }

    /// Invites someone into this company with a role. Owner only.
    async fn member_invite(
        &self,
        ctx: &Context<'_>,
        input: MemberInviteInput,
    ) -> Result<MemberInvitePayload> {
        let viewer = require(ctx, ApiKeyRole::Owner)?;
        match accounts::invite(store(ctx)?, &viewer.tenant, &input.email, input.role.into()).await {
            Ok(inv) => Ok(MemberInvitePayload {
                token: Some(inv.token.expose_secret().to_string()),
                expires_at: Some(time(inv.expires_at)),
                user_errors: vec![],
            }),
            Err(AccountError::Invalid { field, message }) => Ok(MemberInvitePayload {
                token: None,
                expires_at: None,
                user_errors: vec![user_error(field, UserErrorCode::Invalid, message)],
            }),
            Err(e) => Err(internal(e)),
        }
    }

    /// Accepts an invitation and signs in to its company.
    async fn invitation_accept(
        &self,
        ctx: &Context<'_>,
        input: InvitationAcceptInput,
    ) -> Result<SessionPayload> {
        let token = SecretString::from(input.token);
        let password = SecretString::from(input.password);
        match accounts::accept_invitation(store(ctx)?, &token, &password).await {
            Ok(s) => Ok(session_answer(ctx, s)),
            Err(e) => account_error(e),
        }
    }
}

/// `members`: the people of the viewer's tenant.
pub async fn members(ctx: &Context<'_>, viewer: &Viewer) -> Result<Vec<Member>> {
    let list = store(ctx)?
        .tenant(&viewer.tenant)
        .list_members()
        .await
        .map_err(internal)?;
    Ok(list
        .into_iter()
        .map(|m| Member {
            email: m.email,
            role: m.role.into(),
            joined_at: time(m.joined_at),
        })
        .collect())
}
