//! Who may use the console: the admin token, as the dashboard's sign-in (and, in
//! `crate::graphql`, as the operator token that may create tenants). Comparisons are
//! constant-time; the token is never logged or echoed.
//!
//! The dashboard does not keep the token in its cookie: the cookie holds an HMAC of a fixed
//! label under the token, so changing the token signs every browser out, and a stolen cookie
//! does not reveal the token. Forms also carry a second HMAC (the CSRF field), and the cookie is
//! `SameSite=Strict`, so another site cannot make a signed-in browser replay events.

use axum::http::{HeaderMap, header};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Name of the dashboard's session cookie.
pub const SESSION_COOKIE: &str = "mlc_session";

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

    fn mac(&self, label: &str) -> String {
        // HMAC accepts keys of any length; the error arm cannot happen.
        match hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.expose_secret().trim().as_bytes()) {
            Ok(mut m) => {
                m.update(label.as_bytes());
                hex::encode(m.finalize().into_bytes())
            }
            Err(_) => String::new(),
        }
    }

    /// The session cookie's value.
    pub fn session_value(&self) -> String {
        self.mac("ml-connector dashboard session v1")
    }

    /// The value every dashboard form carries.
    pub fn csrf_value(&self) -> String {
        self.mac("ml-connector dashboard form v1")
    }

    pub fn session_matches(&self, cookie: &str) -> bool {
        let expected = self.session_value();
        !expected.is_empty() && expected.as_bytes().ct_eq(cookie.as_bytes()).into()
    }

    pub fn csrf_matches(&self, field: &str) -> bool {
        let expected = self.csrf_value();
        !expected.is_empty() && expected.as_bytes().ct_eq(field.as_bytes()).into()
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
    fn session_and_csrf_values_differ_from_the_token_and_each_other() {
        let t = token();
        let s = t.session_value();
        let c = t.csrf_value();
        assert_eq!(s.len(), 64);
        assert_ne!(s, c);
        assert!(!s.contains("0123456789abcdef0123"));
        assert!(t.session_matches(&s) && !t.session_matches(&c));
        assert!(t.csrf_matches(&c) && !t.csrf_matches(&s));
        let other = AdminToken::new(SecretString::from("ffffffffffffffffffffffffffffffff"));
        assert!(!other.session_matches(&s));
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; mlc_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
