//! The NetSuite account ID and the two spellings NetSuite wants of it.
//!
//! A sandbox account is `1234567_SB1`. The REST host wants it lowercase with `-`
//! (`1234567-sb1.suitetalk.api.netsuite.com`); the TBA `realm` wants it uppercase with `_`
//! (`1234567_SB1`). Getting either wrong shows up as "Invalid login attempt", so both forms are
//! derived here from one stored value.

use url::Url;

/// Why an account ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a NetSuite account ID: expected letters, digits, `_` or `-` \
     (e.g. `1234567` or `1234567_SB1`; copy it from Setup > Company > Company Information)"
)]
pub struct AccountIdError(pub String);

/// A NetSuite account ID such as `1234567`, `1234567_SB1` or `TSTDRV1234567`.
///
/// Stored in realm form (uppercase, `_`); accepts either spelling on input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// Parses an account ID in either host form (`1234567-sb1`) or realm form (`1234567_SB1`).
    pub fn parse(value: &str) -> Result<Self, AccountIdError> {
        let v = value.trim();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(AccountIdError(value.to_string()));
        }
        Ok(AccountId(v.to_ascii_uppercase().replace('-', "_")))
    }

    /// Host form: lowercase, `_` → `-` (`1234567-sb1`).
    pub fn host_form(&self) -> String {
        self.0.to_ascii_lowercase().replace('_', "-")
    }

    /// Realm form, used in TBA `Authorization` headers: uppercase, `-` → `_` (`1234567_SB1`).
    pub fn realm_form(&self) -> String {
        self.0.clone()
    }

    /// `https://<host form>.suitetalk.api.netsuite.com`, the REST base URL. Oracle advises taking
    /// the account-specific domain from Company URLs; [`crate::NetSuiteConfig::base_url`]
    /// overrides this (and points tests at a simulator).
    pub fn default_base_url(&self) -> Url {
        // The host form only holds `[a-z0-9-]`, so this URL always parses.
        let s = format!("https://{}.suitetalk.api.netsuite.com/", self.host_form());
        Url::parse(&s).unwrap_or_else(|_| unreachable_url())
    }
}

#[cold]
fn unreachable_url() -> Url {
    // Only reachable if the checks in `parse` were weakened; fail loudly in that case.
    panic!("account ID produced an invalid host name")
}

impl std::fmt::Display for AccountId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for AccountId {
    type Err = AccountIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_forms() {
        let a = AccountId::parse("1234567_SB1").unwrap();
        assert_eq!(a.host_form(), "1234567-sb1");
        assert_eq!(a.realm_form(), "1234567_SB1");
        assert_eq!(
            a.default_base_url().as_str(),
            "https://1234567-sb1.suitetalk.api.netsuite.com/"
        );
        // Host form in, same account out.
        assert_eq!(AccountId::parse("1234567-sb1").unwrap(), a);
        assert_eq!(
            AccountId::parse("tstdrv99").unwrap().realm_form(),
            "TSTDRV99"
        );
    }

    #[test]
    fn rejects_junk() {
        assert!(AccountId::parse("").is_err());
        assert!(AccountId::parse("123 456").is_err());
        assert!(AccountId::parse("123.evil.com/x").is_err());
        let e = AccountId::parse("a/b").unwrap_err();
        assert!(e.to_string().contains("Company Information"));
    }
}
