//! Who owns a row: the tenant (a company) and its connections (one Stripe account posting into
//! one NetSuite account). The store's per-tenant API takes these, so every query is scoped.

use serde::{Deserialize, Serialize};

use crate::ids::IdError;

fn slug_ok(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = 64;

            /// Lower-case letters, digits, `_` and `-`, at most 64 characters.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                if slug_ok(value, Self::MAX_LEN) {
                    Ok($name(value.to_string()))
                } else {
                    Err(IdError::BadSlug {
                        what: $what,
                        value: value.chars().take(80).collect(),
                    })
                }
            }

            /// The one made by the single-company configuration (`[stripe]`, `[netsuite]`).
            pub fn default_id() -> Self {
                $name("default".to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $name::parse(s)
            }
        }
    };
}

slug_id!(
    /// A tenant (a company), e.g. `acme`. Chosen by the operator; `default` for a single-company
    /// install.
    TenantId,
    "tenant ID"
);
slug_id!(
    /// A connection within its tenant, e.g. `production`. Unique per tenant, not globally.
    ConnectionId,
    "connection ID"
);

/// The unguessable public ID in a connection's webhook URL (`/webhooks/stripe/{id}`):
/// `whc_` and 32 lower-case base-32 characters (160 random bits). It names the connection to
/// Stripe without revealing its tenant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct WebhookRouteId(String);

impl WebhookRouteId {
    pub const PREFIX: &'static str = "whc_";
    const BODY_LEN: usize = 32;
    const ALPHABET: &'static [u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

    /// Parses a route ID from a URL; anything else is `None` (and answered 404).
    pub fn parse(value: &str) -> Option<Self> {
        let body = value.strip_prefix(Self::PREFIX)?;
        (body.len() == Self::BODY_LEN && body.bytes().all(|b| Self::ALPHABET.contains(&b)))
            .then(|| WebhookRouteId(value.to_string()))
    }

    /// A new ID from 20 random bytes (the caller's CSPRNG: this crate does no I/O).
    pub fn from_random(bytes: [u8; 20]) -> Self {
        // 160 bits → 32 base-32 characters, 5 bits each.
        let mut out = String::with_capacity(Self::PREFIX.len() + Self::BODY_LEN);
        out.push_str(Self::PREFIX);
        let mut acc: u64 = 0;
        let mut bits = 0;
        for b in bytes {
            acc = (acc << 8) | u64::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(char::from(Self::ALPHABET[((acc >> bits) & 31) as usize]));
            }
        }
        WebhookRouteId(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Shown whole: the route ID is in the URL Stripe is given, it is not a secret, but it is
/// unguessable so that a stranger cannot even learn which connections exist.
impl std::fmt::Debug for WebhookRouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl std::fmt::Display for WebhookRouteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

impl<'de> Deserialize<'de> for WebhookRouteId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        WebhookRouteId::parse(&s).ok_or_else(|| serde::de::Error::custom("not a webhook route ID"))
    }
}

/// What a connection is doing: drafts and paused connections store their events (nothing a
/// customer paid is ever lost) but post nothing until they are active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    Draft,
    Active,
    Paused,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Draft => "draft",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ConnectionStatus::Draft,
            ConnectionStatus::Active,
            ConnectionStatus::Paused,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// Whether its events are posted.
    pub fn posts(self) -> bool {
        self == ConnectionStatus::Active
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_refuse_what_would_break_urls_and_sql_identifiers() {
        assert!(TenantId::parse("acme-eu_2").is_ok());
        for bad in ["", "Acme", "a b", "a/b", "a'b", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
            assert!(ConnectionId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn route_ids_round_trip_and_refuse_anything_else() {
        let id = WebhookRouteId::from_random([0xA5; 20]);
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(WebhookRouteId::parse(id.as_str()), Some(id.clone()));
        let other = WebhookRouteId::from_random([0x5A; 20]);
        assert_ne!(id, other);
        for bad in [
            "",
            "whc_",
            "default",
            "whc_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            "../etc",
        ] {
            assert!(WebhookRouteId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
