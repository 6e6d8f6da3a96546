//! Accounts: signing up (a tenant with its owner), signing in and out, and invitations, for the
//! dashboard's sessions. Passwords follow NIST SP 800-63B: a length rule (12 to 256 characters,
//! any characters) and a check against common and guessable passwords (zxcvbn's dictionaries of
//! leaked passwords, words, names and patterns, with the email as context), nothing else; they are
//! stored as Argon2id hashes (the argon2 crate's defaults: 19 MiB, 2 passes, as OWASP
//! recommends). Session and invitation tokens are random, shown once, stored as SHA-256.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use mlc_core::{TenantId, UnixMillis, now_millis};
use mlc_store::{ApiKeyRole, Store, StoreError, TenantScope, token_hash};
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};

/// Shortest and longest password accepted.
pub const PASSWORD_MIN: usize = 12;
pub const PASSWORD_MAX: usize = 256;
/// How long a session lasts from sign-in.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
/// How long an invitation stays open.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 3_600_000;
/// How long a sign-in link works (once).
pub const SIGN_IN_LINK_TTL_MS: i64 = 15 * 60_000;
/// The prefix of a sign-in link's token (an invitation's is `mli_`): a link and an invitation
/// share the invitations table, and each is refused where the other is expected.
pub const SIGN_IN_LINK_PREFIX: &str = "mll_";

/// Who may sign up (`admin.signup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupPolicy {
    /// Anyone may create a tenant.
    Open,
    /// Only with an invitation (into an existing tenant).
    InviteOnly,
    /// Nobody: tenants are made by the operator.
    Closed,
}

impl SignupPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "open" => Some(SignupPolicy::Open),
            "invite" | "invite-only" => Some(SignupPolicy::InviteOnly),
            "closed" => Some(SignupPolicy::Closed),
            _ => None,
        }
    }
}

/// Why an account action was refused. Messages say what to do; none holds a password.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The input is not acceptable (permanent: change it).
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Taken already (an email, a company ID).
    #[error("{message}")]
    Taken {
        field: &'static str,
        message: String,
    },
    /// Wrong email or password (never says which).
    #[error("the email or the password is not right")]
    BadCredentials,
    /// Sign-up is not open here.
    #[error("sign-up is {0} on this service")]
    SignupNotOpen(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed (transient: retry).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// A new session: its token (the cookie) and CSRF token, shown once.
pub struct NewSession {
    pub token: SecretString,
    pub csrf: SecretString,
    pub tenant: TenantScope,
    pub role: ApiKeyRole,
    pub email: String,
    pub expires_at: UnixMillis,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("tenant", &self.tenant)
            .field("role", &self.role)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn random_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretString::from(format!("{prefix}{}", hex::encode(bytes)))
}

/// Checks an email's shape (one `@`, something on both sides, a dot in the domain, no spaces).
pub fn check_email(email: &str) -> Result<String, AccountError> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.contains(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        });
    if ok {
        Ok(e)
    } else {
        Err(AccountError::Invalid {
            field: "email",
            message: format!("`{}` is not an email address", email.trim()),
        })
    }
}

/// NIST SP 800-63B: length, and not common or guessable (with the email as context).
pub fn check_password(password: &str, email: &str) -> Result<(), AccountError> {
    let n = password.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
        return Err(AccountError::Invalid {
            field: "password",
            message: format!(
                "a password is {PASSWORD_MIN} to {PASSWORD_MAX} characters (any characters, \
                 spaces included); a few unrelated words make a good one"
            ),
        });
    }
    let local = email.split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(
        password,
        &[email, local, "ml-connector", "stripe", "netsuite"],
    );
    if u8::from(estimate.score()) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "it is easy to guess".into());
        return Err(AccountError::Invalid {
            field: "password",
            message: format!(
                "choose another password: {hint} (it is common, or close to your email); a few \
                 unrelated words make a good one"
            ),
        });
    }
    Ok(())
}

fn hash_password(password: &str) -> Result<String, AccountError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AccountError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of no password, verified against when the email is unknown so that a wrong email
/// takes as long as a wrong password (nothing tells which emails have accounts).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password never used").unwrap_or_default())
}

/// Runs the CPU-heavy hashing off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AccountError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Signs up: a new tenant `company_id` named `company_name`, with its owner, and a session.
pub async fn sign_up(
    store: &Store,
    policy: SignupPolicy,
    email: &str,
    password: &SecretString,
    company_id: &str,
    company_name: &str,
) -> Result<NewSession, AccountError> {
    match policy {
        SignupPolicy::Open => {}
        SignupPolicy::InviteOnly => return Err(AccountError::SignupNotOpen("by invitation only")),
        SignupPolicy::Closed => return Err(AccountError::SignupNotOpen("closed")),
    }
    let email = check_email(email)?;
    let tenant_id = TenantId::parse(company_id.trim()).map_err(|_| AccountError::Invalid {
        field: "companyId",
        message: format!(
            "`{}` is not a company ID: lower-case letters, digits, `_` and `-` (e.g. `acme`)",
            company_id.trim()
        ),
    })?;
    let name = company_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AccountError::Invalid {
            field: "companyName",
            message: "a company name is 1 to 200 characters".into(),
        });
    }
    check_password(password.expose_secret(), &email)?;
    let plain = password.clone();
    let hash = blocking(move || hash_password(plain.expose_secret())).await??;
    let (tenant, user_id) = match store.create_account(&tenant_id, name, &email, &hash).await {
        Ok(made) => made,
        Err(StoreError::AlreadyExists(what)) if what.starts_with("tenant") => {
            return Err(AccountError::Taken {
                field: "companyId",
                message: format!("the company ID `{tenant_id}` is taken: choose another"),
            });
        }
        Err(StoreError::AlreadyExists(_)) => {
            return Err(AccountError::Taken {
                field: "email",
                message: format!("{email} has an account already: sign in instead"),
            });
        }
        Err(e) => return Err(e.into()),
    };
    start_session(store, &user_id, &email, tenant, ApiKeyRole::Owner).await
}

async fn start_session(
    store: &Store,
    user_id: &str,
    email: &str,
    tenant: TenantScope,
    role: ApiKeyRole,
) -> Result<NewSession, AccountError> {
    let token = random_token("mls_");
    let csrf = random_token("");
    let expires_at = now_millis() + SESSION_TTL_MS;
    store
        .create_session(
            user_id,
            &tenant,
            &token_hash(token.expose_secret()),
            &token_hash(csrf.expose_secret()),
            expires_at,
        )
        .await?;
    Ok(NewSession {
        token,
        csrf,
        tenant,
        role,
        email: email.to_string(),
        expires_at,
    })
}

/// Signs in to the user's first tenant (or `tenant`, when given and theirs).
pub async fn sign_in(
    store: &Store,
    email: &str,
    password: &SecretString,
    tenant: Option<&str>,
) -> Result<NewSession, AccountError> {
    let user = store.user_by_email(email).await?;
    let plain = password.clone();
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_string());
    let matches = blocking(move || verify_password(plain.expose_secret(), &hash)).await?;
    let Some(user) = user.filter(|_| matches) else {
        return Err(AccountError::BadCredentials);
    };
    let memberships = store.memberships_of(&user.id).await?;
    let chosen = match tenant {
        Some(t) => memberships.iter().find(|(id, _)| id.as_str() == t.trim()),
        None => memberships.first(),
    };
    let Some((tenant_id, role)) = chosen.cloned() else {
        // Right password, no such membership: the same answer as a wrong one.
        return Err(AccountError::BadCredentials);
    };
    let Some(scope) = store.tenant_scope(&tenant_id).await? else {
        return Err(AccountError::BadCredentials);
    };
    start_session(store, &user.id, &user.email, scope, role).await
}

/// An invitation made: its token (for the link), shown once.
pub struct NewInvitation {
    pub token: SecretString,
    pub expires_at: UnixMillis,
}

/// Invites `email` into the tenant with `role`.
pub async fn invite(
    store: &Store,
    tenant: &TenantScope,
    email: &str,
    role: ApiKeyRole,
) -> Result<NewInvitation, AccountError> {
    let email = check_email(email)?;
    let token = random_token("mli_");
    let expires_at = now_millis() + INVITATION_TTL_MS;
    store
        .tenant(tenant)
        .create_invitation(&email, role, &token_hash(token.expose_secret()), expires_at)
        .await?;
    Ok(NewInvitation { token, expires_at })
}

/// Accepts an invitation: joins its tenant (making the user, with `password`, when the invited
/// email has no account yet), and signs in there.
pub async fn accept_invitation(
    store: &Store,
    token: &SecretString,
    password: &SecretString,
) -> Result<NewSession, AccountError> {
    let hash = token_hash(token.expose_secret());
    let invalid = || AccountError::Invalid {
        field: "token",
        message: "this invitation is not valid (used, expired or unknown): ask for a new one"
            .into(),
    };
    // A sign-in link is not an invitation (they share a table).
    if token
        .expose_secret()
        .trim()
        .starts_with(SIGN_IN_LINK_PREFIX)
    {
        return Err(invalid());
    }
    let mlc_store::Invitation::Open { email, .. } = store.invitation(&hash).await? else {
        return Err(invalid());
    };
    let existing = store.user_by_email(&email).await?;
    let new_hash = match &existing {
        // An existing user proves who they are with their own password.
        Some(user) => {
            let plain = password.clone();
            let stored = user.password_hash.clone();
            if !blocking(move || verify_password(plain.expose_secret(), &stored)).await? {
                return Err(AccountError::BadCredentials);
            }
            None
        }
        None => {
            check_password(password.expose_secret(), &email)?;
            let plain = password.clone();
            Some(blocking(move || hash_password(plain.expose_secret())).await??)
        }
    };
    let Some((user_id, tenant)) = store.accept_invitation(&hash, new_hash.as_deref()).await? else {
        return Err(invalid());
    };
    let role = store
        .memberships_of(&user_id)
        .await?
        .into_iter()
        .find(|(t, _)| t == tenant.tenant_id())
        .map(|(_, r)| r)
        .ok_or_else(invalid)?;
    start_session(store, &user_id, &email, tenant, role).await
}

/// Adds a person to an existing tenant with `role` and a password (checked and hashed as for
/// [`sign_up`]), without a session: for operators' tools (the demo's sign-in). People normally
/// join by invitation ([`invite`]).
pub async fn create_member(
    store: &Store,
    tenant: &TenantScope,
    email: &str,
    password: &SecretString,
    role: ApiKeyRole,
) -> Result<(), AccountError> {
    let email = check_email(email)?;
    check_password(password.expose_secret(), &email)?;
    let plain = password.clone();
    let hash = blocking(move || hash_password(plain.expose_secret())).await??;
    match store.add_user_to_tenant(tenant, &email, &hash, role).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists(_)) => Err(AccountError::Taken {
            field: "email",
            message: format!("{email} has an account already"),
        }),
        Err(e) => Err(e.into()),
    }
}

/// A sign-in link made: its token, shown once (the link carries it).
pub struct NewSignInLink {
    pub token: SecretString,
    pub expires_at: UnixMillis,
}

/// Makes a one-time sign-in link for a member of `tenant`: it signs them in there, with no
/// password, once, within [`SIGN_IN_LINK_TTL_MS`]. For operators' tools (the demo opens on a
/// signed-in person); stored, like an invitation, only as its token's SHA-256.
pub async fn sign_in_link(
    store: &Store,
    tenant: &TenantScope,
    email: &str,
) -> Result<NewSignInLink, AccountError> {
    let email = check_email(email)?;
    let not_member = || AccountError::Invalid {
        field: "email",
        message: format!("{email} is not a member of {}", tenant.tenant_id()),
    };
    let user = store.user_by_email(&email).await?.ok_or_else(not_member)?;
    let role = store
        .memberships_of(&user.id)
        .await?
        .into_iter()
        .find(|(t, _)| t == tenant.tenant_id())
        .map(|(_, r)| r)
        .ok_or_else(not_member)?;
    let token = random_token(SIGN_IN_LINK_PREFIX);
    let expires_at = now_millis() + SIGN_IN_LINK_TTL_MS;
    store
        .tenant(tenant)
        .create_invitation(&email, role, &token_hash(token.expose_secret()), expires_at)
        .await?;
    Ok(NewSignInLink { token, expires_at })
}

/// Signs in with a sign-in link's token: once; a second use, an expired or an unknown link is
/// refused with a message that says which, and what to do.
pub async fn sign_in_with_link(
    store: &Store,
    token: &SecretString,
) -> Result<NewSession, AccountError> {
    let refused = |message: &str| AccountError::Invalid {
        field: "token",
        message: message.to_string(),
    };
    let unknown = "this sign-in link is not valid: check that it was copied whole, or ask for a \
                   new one (or sign in with your password)";
    let given = token.expose_secret().trim();
    if !given.starts_with(SIGN_IN_LINK_PREFIX) {
        return Err(refused(unknown));
    }
    match store.use_sign_in_link(&token_hash(given)).await? {
        mlc_store::SignInLink::Used {
            user_id,
            email,
            tenant_id,
            role,
        } => {
            let Some(scope) = store.tenant_scope(&tenant_id).await? else {
                return Err(refused(unknown));
            };
            start_session(store, &user_id, &email, scope, role).await
        }
        mlc_store::SignInLink::AlreadyUsed => Err(refused(
            "this sign-in link has been used already: a link signs in once. Sign in with your \
             password, or ask for a new link",
        )),
        mlc_store::SignInLink::Expired => Err(refused(
            "this sign-in link has expired (a link works for 15 minutes): ask for a new one, or \
             sign in with your password",
        )),
        mlc_store::SignInLink::Unknown => Err(refused(unknown)),
    }
}

/// Whether a CSRF token is the session's (compared as hashes, in constant time).
pub fn csrf_matches(session_csrf_hash: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    token_hash(given.trim())
        .as_bytes()
        .ct_eq(session_csrf_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_length_and_guessability_only() {
        let email = "ana@example.com";
        assert!(check_password("short", email).is_err());
        assert!(check_password("password1234", email).is_err(), "common");
        assert!(
            check_password("ana@example.com1", email).is_err(),
            "the email"
        );
        assert!(
            check_password("aaaaaaaaaaaaaaaa", email).is_err(),
            "repeated"
        );
        assert!(check_password("correct horse battery staple", email).is_ok());
        assert!(check_password("lighthouse-marmalade-quarry-7", email).is_ok());
        assert!(check_password(&"x".repeat(300), email).is_err(), "too long");
    }

    #[test]
    fn a_password_hash_verifies_only_its_password() {
        let h = hash_password("lighthouse-marmalade-quarry-7").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("lighthouse-marmalade-quarry-7", &h));
        assert!(!verify_password("lighthouse-marmalade-quarry-8", &h));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn emails_are_checked_and_lower_cased() {
        assert_eq!(check_email(" Ana@Example.COM ").unwrap(), "ana@example.com");
        for bad in [
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a na@example.com",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
