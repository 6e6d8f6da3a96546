//! The admin token (`admin.token`): GraphQL's operator token, which may create tenants
//! (`crate::graphql`). Comparisons are constant-time; the token is never logged or echoed.
//! And the request cookies (the web app's session cookie is read by `crate::graphql`).

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// The admin token. Redacts itself in `Debug`; compares in constant time.
#[derive(Clone)]
pub struct AdminToken(SecretString);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl AdminToken {
    pub fn new(token: SecretString) -> Self {
        AdminToken(token)
    }

    /// Whether `given` is the token. Both sides are hashed first, so the comparison takes the
    /// same time whatever the length or content of the guess.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::Digest;
        let a = sha2::Sha256::digest(self.0.expose_secret().trim().as_bytes());
        let b = sha2::Sha256::digest(given.trim().as_bytes());
        a.ct_eq(&b).into()
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> AdminToken {
        AdminToken::new(SecretString::from("0123456789abcdef0123456789abcdef"))
    }

    #[test]
    fn matches_only_the_token() {
        let t = token();
        assert!(t.matches("0123456789abcdef0123456789abcdef"));
        assert!(!t.matches("0123456789abcdef0123456789abcdeF"));
        assert!(!t.matches(""));
        assert!(!t.matches("0123456789abcdef"));
        assert_eq!(format!("{t:?}"), "AdminToken([redacted])");
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; mlc_sid=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "mlc_sid"), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
