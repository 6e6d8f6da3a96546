//! People and their sessions: users (email and password hash; the hash is made by the service,
//! never here), memberships of tenants with a role, dashboard sessions and invitations. Tokens
//! (sessions, invitations) are stored only as their SHA-256: the database never holds one that
//! works.

use mlc_core::{TenantId, UnixMillis, now_millis};
use sha2::{Digest as _, Sha256};

use crate::db::{Rls, db_err, get};
use crate::model::StoreError;
use crate::scope::{TenantScope, TenantStore};
use crate::store::Store;
use crate::tenants::ApiKeyRole;

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A user as the store holds them (the hash is opaque here).
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub password_hash: String,
}

/// A live session: who, in which tenant, with what role now.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub user_id: String,
    pub email: String,
    pub tenant: TenantScope,
    pub role: ApiKeyRole,
    pub csrf_hash: String,
    pub expires_at: UnixMillis,
}

/// A member of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: ApiKeyRole,
    pub joined_at: UnixMillis,
}

/// What accepting an invitation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invitation {
    /// Valid: for this email, into this tenant, with this role.
    Open {
        tenant_id: TenantId,
        email: String,
        role: ApiKeyRole,
    },
    /// Unknown, used or expired.
    Invalid,
}

/// What using a sign-in link found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInLink {
    /// Valid, and now used: the member it signs in.
    Used {
        user_id: String,
        email: String,
        tenant_id: TenantId,
        role: ApiKeyRole,
    },
    /// It worked once already.
    AlreadyUsed,
    /// Its time is up.
    Expired,
    /// No such link, or its person is no longer a member of its tenant.
    Unknown,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A row's `tenant_id` (written by this store, so valid).
fn tenant_of(row: &sqlx::any::AnyRow) -> Result<TenantId, StoreError> {
    let tenant: String = get(row, "tenant_id")?;
    TenantId::parse(&tenant).map_err(|e| StoreError::Database(format!("stored tenant: {e}")))
}

fn role_of(s: &str) -> Result<ApiKeyRole, StoreError> {
    ApiKeyRole::parse(s).ok_or_else(|| StoreError::Database(format!("stored role `{s}`")))
}

impl Store {
    /// Creates a tenant, its first user and that user's owner membership, together. The email is
    /// stored lower-cased. [`StoreError::AlreadyExists`] names what is taken (the tenant ID or
    /// the email); nothing is created then.
    pub async fn create_account(
        &self,
        tenant_id: &TenantId,
        tenant_name: &str,
        email: &str,
        password_hash: &str,
    ) -> Result<(TenantScope, String), StoreError> {
        let email = email.trim().to_lowercase();
        let now = now_millis();
        let user_id = new_id();
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::AllTenants).await?;
        let taken = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM users WHERE email = $1) AS emails, \
             (SELECT COUNT(*) FROM tenants WHERE id = $2) AS tenants",
        )
        .bind(email.clone())
        .bind(tenant_id.as_str().to_string())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if get::<i64>(&taken, "emails")? > 0 {
            return Err(StoreError::AlreadyExists(format!("an account for {email}")));
        }
        if get::<i64>(&taken, "tenants")? > 0 {
            return Err(StoreError::AlreadyExists(format!("tenant `{tenant_id}`")));
        }
        for (sql, binds) in [
            (
                "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                vec![tenant_id.as_str().to_string(), tenant_name.to_string()],
            ),
            (
                "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                vec![user_id.clone(), email.clone(), password_hash.to_string()],
            ),
            (
                "INSERT INTO memberships (tenant_id, user_id, role, created_at) \
                 VALUES ($1, $2, 'owner', $3)",
                vec![tenant_id.as_str().to_string(), user_id.clone()],
            ),
        ] {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = q.bind(b);
            }
            q.bind(now).execute(&mut *tx).await.map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok((TenantScope::new(tenant_id.clone()), user_id))
    }

    /// The user with this email (compared lower-cased).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT id, email, password_hash FROM users WHERE email = $1")
            .bind(email.trim().to_lowercase())
            .fetch_optional(&mut *self.db.read_all().await?)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(UserRecord {
                id: get(&r, "id")?,
                email: get(&r, "email")?,
                password_hash: get(&r, "password_hash")?,
            })
        })
        .transpose()
    }

    /// The tenants a user belongs to, with their role, oldest membership first.
    pub async fn memberships_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(TenantId, ApiKeyRole)>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, role FROM memberships WHERE user_id = $1 ORDER BY created_at, tenant_id",
        )
        .bind(user_id.to_string())
        .fetch_all(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((tenant_of(r)?, role_of(&get::<String>(r, "role")?)?)))
            .collect()
    }

    /// Starts a session of `user_id` in `tenant`, known by the hashes of its token and its CSRF
    /// token, until `expires_at`.
    pub async fn create_session(
        &self,
        user_id: &str,
        tenant: &TenantScope,
        token_hash: &str,
        csrf_hash: &str,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(tenant.tenant_id().as_str()))
            .await?;
        let now = now_millis();
        // Expired sessions of this user go as a new one starts (nothing else sweeps them).
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= $2")
            .bind(user_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, tenant_id, csrf_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash.to_string())
        .bind(user_id.to_string())
        .bind(tenant.tenant_id().as_str().to_string())
        .bind(csrf_hash.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// The live session a token's hash names: unexpired, and its user still a member of its
    /// tenant (the role is the membership's now, so a demotion takes effect at once).
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionInfo>, StoreError> {
        let row = sqlx::query(
            "SELECT s.user_id, u.email, s.tenant_id, m.role, s.csrf_hash, s.expires_at \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = s.tenant_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash.to_string())
        .bind(now_millis())
        .fetch_optional(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        row.map(|r| {
            Ok(SessionInfo {
                user_id: get(&r, "user_id")?,
                email: get(&r, "email")?,
                tenant: TenantScope::new(tenant_of(&r)?),
                role: role_of(&get::<String>(&r, "role")?)?,
                csrf_hash: get(&r, "csrf_hash")?,
                expires_at: get(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    /// Ends a session (signing out); `false` when there was none.
    pub async fn end_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::AllTenants).await?;
        let n = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n > 0)
    }

    /// What an invitation token's hash names, if it is still open.
    pub async fn invitation(&self, token_hash: &str) -> Result<Invitation, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id, email, role FROM invitations \
             WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash.to_string())
        .bind(now_millis())
        .fetch_optional(&mut *self.db.read_all().await?)
        .await
        .map_err(db_err)?;
        let Some(r) = row else {
            return Ok(Invitation::Invalid);
        };
        Ok(Invitation::Open {
            tenant_id: tenant_of(&r)?,
            email: get(&r, "email")?,
            role: role_of(&get::<String>(&r, "role")?)?,
        })
    }

    /// Accepts an open invitation: the invited email's user (made with `password_hash` when
    /// there is none yet) joins the tenant with the invited role, once. Returns the user's ID
    /// and the tenant, or `None` when the invitation is not open (any more).
    pub async fn accept_invitation(
        &self,
        token_hash: &str,
        password_hash: Option<&str>,
    ) -> Result<Option<(String, TenantScope)>, StoreError> {
        let Invitation::Open {
            tenant_id,
            email,
            role,
        } = self.invitation(token_hash).await?
        else {
            return Ok(None);
        };
        let now = now_millis();
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::AllTenants).await?;
        // Marked first: a second acceptance racing this one changes no row and stops here.
        let n = sqlx::query(
            "UPDATE invitations SET accepted_at = $2 WHERE token_hash = $1 AND accepted_at IS NULL",
        )
        .bind(token_hash.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        let existing = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email.clone())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        let user_id = match existing {
            Some(r) => get::<String>(&r, "id")?,
            None => {
                let Some(hash) = password_hash else {
                    return Ok(None);
                };
                let id = new_id();
                sqlx::query(
                    "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(id.clone())
                .bind(email.clone())
                .bind(hash.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                id
            }
        };
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(tenant_id.as_str().to_string())
        .bind(user_id.clone())
        .bind(role.as_str().to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some((user_id, TenantScope::new(tenant_id))))
    }
}

impl TenantStore {
    /// Invites `email` into this tenant with `role`, by a token's hash, until `expires_at`.
    pub async fn create_invitation(
        &self,
        email: &str,
        role: ApiKeyRole,
        token_hash: &str,
        expires_at: UnixMillis,
    ) -> Result<(), StoreError> {
        let db = &self.store.db;
        let _guard = db.write_guard().await;
        let mut tx = db
            .begin_write_as(Rls::Tenant(self.scope.tenant_id().as_str()))
            .await?;
        sqlx::query(
            "INSERT INTO invitations (token_hash, tenant_id, email, role, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash.to_string())
        .bind(self.scope.tenant_id().as_str().to_string())
        .bind(email.trim().to_lowercase())
        .bind(role.as_str().to_string())
        .bind(now_millis())
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    /// This tenant's members, by email.
    pub async fn list_members(&self) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m \
             JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1 ORDER BY u.email",
        )
        .bind(self.scope.tenant_id().as_str().to_string())
        .fetch_all(
            &mut *self
                .store
                .db
                .read_tenant(self.scope.tenant_id().as_str())
                .await?,
        )
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user_id: get(r, "user_id")?,
                    email: get(r, "email")?,
                    role: role_of(&get::<String>(r, "role")?)?,
                    joined_at: get(r, "created_at")?,
                })
            })
            .collect()
    }
}

impl Store {
    /// Adds a new user (email lower-cased, `password_hash` made by the service) to an existing
    /// tenant with `role`, together; returns the user's ID. [`StoreError::AlreadyExists`] when
    /// the email has an account already (nothing is created then). For operators' tools (the
    /// demo's sign-in); people join a tenant by invitation.
    pub async fn add_user_to_tenant(
        &self,
        tenant: &TenantScope,
        email: &str,
        password_hash: &str,
        role: ApiKeyRole,
    ) -> Result<String, StoreError> {
        let email = email.trim().to_lowercase();
        let now = now_millis();
        let user_id = new_id();
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::AllTenants).await?;
        let taken = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE email = $1")
            .bind(email.clone())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        if get::<i64>(&taken, "n")? > 0 {
            return Err(StoreError::AlreadyExists(format!("an account for {email}")));
        }
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id.clone())
        .bind(email)
        .bind(password_hash.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.tenant_id().as_str().to_string())
        .bind(user_id.clone())
        .bind(role.as_str().to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(user_id)
    }
}

impl Store {
    /// Uses a sign-in link, once: a link is an invitation row (the same table, the same
    /// single-use `accepted_at`) for a person who is a member already, told apart from a real
    /// invitation by its token (the service gives links their own prefix, and the hash covers
    /// it). Marks it used and returns the member it signs in, with the role they have now.
    pub async fn use_sign_in_link(&self, token_hash: &str) -> Result<SignInLink, StoreError> {
        let now = now_millis();
        let db = &self.db;
        let _guard = db.write_guard().await;
        let mut tx = db.begin_write_as(Rls::AllTenants).await?;
        let Some(link) = sqlx::query(
            "SELECT tenant_id, email, expires_at, accepted_at FROM invitations WHERE token_hash = $1",
        )
        .bind(token_hash.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        else {
            return Ok(SignInLink::Unknown);
        };
        if get::<Option<i64>>(&link, "accepted_at")?.is_some() {
            return Ok(SignInLink::AlreadyUsed);
        }
        if get::<i64>(&link, "expires_at")? <= now {
            return Ok(SignInLink::Expired);
        }
        let tenant_id = tenant_of(&link)?;
        let email: String = get(&link, "email")?;
        // Marked first: a second use racing this one changes no row and stops here.
        let n = sqlx::query(
            "UPDATE invitations SET accepted_at = $2 WHERE token_hash = $1 AND accepted_at IS NULL",
        )
        .bind(token_hash.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if n == 0 {
            return Ok(SignInLink::AlreadyUsed);
        }
        let member = sqlx::query(
            "SELECT u.id, m.role FROM users u JOIN memberships m ON m.user_id = u.id \
             WHERE u.email = $1 AND m.tenant_id = $2",
        )
        .bind(email.clone())
        .bind(tenant_id.as_str().to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(member) = member else {
            // Not a member (any more): the link is spent all the same.
            tx.commit().await.map_err(db_err)?;
            return Ok(SignInLink::Unknown);
        };
        let used = SignInLink::Used {
            user_id: get(&member, "id")?,
            email,
            tenant_id,
            role: role_of(&get::<String>(&member, "role")?)?,
        };
        tx.commit().await.map_err(db_err)?;
        Ok(used)
    }
}
