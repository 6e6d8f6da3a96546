//! Token-based authentication (OAuth 1.0a, HMAC-SHA256), written by hand.
//!
//! NetSuite's TBA is RFC 5849 with `HMAC-SHA256` (SHA-1 was dropped in 2023.1):
//! - base string `METHOD&enc(scheme://host[:port]/path)&enc(sorted, encoded params)` where the
//!   params are the URL's query parameters, any form body parameters and the `oauth_*` ones;
//!   `realm` is *not* signed (RFC 5849 §3.4.1.3.1), JSON bodies are not signed;
//! - key `enc(consumer_secret)&enc(token_secret)`, signature `base64(HMAC-SHA256(key, base))`;
//! - header `OAuth realm="<ACCOUNT_SB1>", oauth_consumer_key=…, …, oauth_signature=…`.
//!
//! TBA is legacy (no new integrations from 2027.1); prefer [`super::m2m`].

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// RFC 3986 §2.3 unreserved characters stay as they are; everything else is `%XX` (uppercase).
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// RFC 3986 percent-encoding as RFC 5849 §3.6 requires (not form encoding: space is `%20`).
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// The base string URI (RFC 5849 §3.4.1.2): lowercase scheme and host, port only when not the
/// default, path, no query or fragment. The `url` crate already lowercases and drops default ports.
pub fn base_string_uri(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(url.path());
    s
}

/// The signature base string (RFC 5849 §3.4.1). `extra_params` are decoded form-body parameters
/// (none for JSON requests) plus the `oauth_*` parameters except `oauth_signature` and `realm`.
/// Query parameters are taken from `url`.
pub fn signature_base_string(method: &str, url: &Url, extra_params: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (percent_encode(&k), percent_encode(&v)))
        .chain(
            extra_params
                .iter()
                .map(|(k, v)| (percent_encode(k), percent_encode(v))),
        )
        .collect();
    // Sorted by encoded name, then encoded value (§3.4.1.3.2).
    pairs.sort();
    let normalized = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(&base_string_uri(url)),
        percent_encode(&normalized)
    )
}

/// `base64(HMAC-SHA256(enc(consumer_secret)&enc(token_secret), base_string))`.
pub fn hmac_sha256_signature(
    base_string: &str,
    consumer_secret: &str,
    token_secret: &str,
) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs requests for one TBA integration + access token.
pub struct TbaSigner {
    realm: String,
    consumer_key: String,
    consumer_secret: SecretString,
    token_id: String,
    token_secret: SecretString,
}

impl std::fmt::Debug for TbaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TbaSigner")
            .field("realm", &self.realm)
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &"[REDACTED]")
            .field("token_id", &self.token_id)
            .field("token_secret", &"[REDACTED]")
            .finish()
    }
}

impl TbaSigner {
    /// `realm` must be the account's realm form ([`super::AccountId::realm_form`]).
    pub fn new(
        realm: String,
        consumer_key: String,
        consumer_secret: SecretString,
        token_id: String,
        token_secret: SecretString,
    ) -> Self {
        TbaSigner {
            realm,
            consumer_key,
            consumer_secret,
            token_id,
            token_secret,
        }
    }

    /// An `Authorization` header value for a request with a fresh timestamp and random nonce.
    pub fn authorization_header(&self, method: &str, url: &Url) -> String {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let nonce: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        self.authorization_header_with(method, url, timestamp, &nonce)
    }

    /// As [`Self::authorization_header`] with a given timestamp and nonce (for tests).
    pub fn authorization_header_with(
        &self,
        method: &str,
        url: &Url,
        timestamp: u64,
        nonce: &str,
    ) -> String {
        let oauth: Vec<(String, String)> = vec![
            ("oauth_consumer_key".into(), self.consumer_key.clone()),
            ("oauth_token".into(), self.token_id.clone()),
            ("oauth_signature_method".into(), "HMAC-SHA256".into()),
            ("oauth_timestamp".into(), timestamp.to_string()),
            ("oauth_nonce".into(), nonce.to_string()),
            ("oauth_version".into(), "1.0".into()),
        ];
        let base = signature_base_string(method, url, &oauth);
        let signature = hmac_sha256_signature(
            &base,
            self.consumer_secret.expose_secret(),
            self.token_secret.expose_secret(),
        );
        let mut header = format!("OAuth realm=\"{}\"", percent_encode(&self.realm));
        for (k, v) in oauth
            .iter()
            .chain(std::iter::once(&("oauth_signature".to_string(), signature)))
        {
            header.push_str(&format!(", {k}=\"{}\"", percent_encode(v)));
        }
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 5849 §3.4.1.1 example: the exact base string from the RFC.
    #[test]
    fn rfc5849_base_string_example() {
        let url =
            Url::parse("http://example.com:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").unwrap();
        // Body `c2&a3=2+q` (form encoded), decoded; `realm` is not part of the signature.
        let extra: Vec<(String, String)> = [
            ("c2", ""),
            ("a3", "2 q"),
            ("oauth_consumer_key", "9djdj82h48djs9d2"),
            ("oauth_token", "kkk9d7dh3k39sjv7"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131201"),
            ("oauth_nonce", "7d8f3e4a"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let expected = "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
            %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
            key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
            ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
            9d7dh3k39sjv7";
        assert_eq!(signature_base_string("post", &url, &extra), expected);
    }

    #[test]
    fn uri_keeps_non_default_port_and_drops_query() {
        let url = Url::parse("HTTP://Example.COM:8080/a/b?x=1#f").unwrap();
        assert_eq!(base_string_uri(&url), "http://example.com:8080/a/b");
        let url = Url::parse("https://1234567-sb1.suitetalk.api.netsuite.com:443/x").unwrap();
        assert_eq!(
            base_string_uri(&url),
            "https://1234567-sb1.suitetalk.api.netsuite.com/x"
        );
    }

    #[test]
    fn header_has_realm_and_all_oauth_fields_and_a_known_signature() {
        let s = TbaSigner::new(
            "1234567_SB1".into(),
            "ck".into(),
            SecretString::from("cs"),
            "tk".into(),
            SecretString::from("ts"),
        );
        let url = Url::parse(
            "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/query/v1/suiteql?limit=10&offset=0",
        )
        .unwrap();
        let h = s.authorization_header_with("POST", &url, 1508242306, "fjaLirsIcCGVZWzBX0pg");
        assert!(h.starts_with("OAuth realm=\"1234567_SB1\", oauth_consumer_key=\"ck\""));
        for f in [
            "oauth_token=\"tk\"",
            "oauth_signature_method=\"HMAC-SHA256\"",
            "oauth_timestamp=\"1508242306\"",
            "oauth_nonce=\"fjaLirsIcCGVZWzBX0pg\"",
            "oauth_version=\"1.0\"",
            "oauth_signature=\"",
        ] {
            assert!(h.contains(f), "{f} missing in {h}");
        }
        // The signature is the HMAC of the base string without realm.
        let base = signature_base_string(
            "POST",
            &url,
            &[
                ("oauth_consumer_key".into(), "ck".into()),
                ("oauth_token".into(), "tk".into()),
                ("oauth_signature_method".into(), "HMAC-SHA256".into()),
                ("oauth_timestamp".into(), "1508242306".into()),
                ("oauth_nonce".into(), "fjaLirsIcCGVZWzBX0pg".into()),
                ("oauth_version".into(), "1.0".into()),
            ],
        );
        assert!(!base.contains("realm"));
        assert!(base.contains("limit%3D10"));
        let sig = hmac_sha256_signature(&base, "cs", "ts");
        assert!(h.ends_with(&format!("oauth_signature=\"{}\"", percent_encode(&sig))));
        assert!(!format!("{s:?}").contains("\"cs\""));
    }

    #[test]
    fn hmac_known_vector() {
        // Computed independently: python3 hmac.new(b"k%20s&t", b"base", sha256), base64.
        let sig = hmac_sha256_signature("base", "k s", "t");
        assert_eq!(sig, "eUhRLX1B2UrlrYmoqNG5HZ2dCOyNz8HfY5AAJhtI/Q4=");
    }

    proptest! {
        #[test]
        fn encoding_leaves_only_unreserved_and_escapes(s in any::<String>()) {
            let e = percent_encode(&s);
            let mut chars = e.bytes().peekable();
            while let Some(b) = chars.next() {
                if b == b'%' {
                    let h1 = chars.next();
                    let h2 = chars.next();
                    prop_assert!(matches!(h1, Some(b'0'..=b'9' | b'A'..=b'F')));
                    prop_assert!(matches!(h2, Some(b'0'..=b'9' | b'A'..=b'F')));
                } else {
                    prop_assert!(b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                }
            }
            // Decoding gives the original back.
            let decoded = percent_encoding::percent_decode_str(&e).decode_utf8().unwrap();
            prop_assert_eq!(decoded.as_ref(), s.as_str());
        }

        #[test]
        fn unreserved_strings_are_unchanged(s in "[A-Za-z0-9._~-]*") {
            prop_assert_eq!(percent_encode(&s), s);
        }

        #[test]
        fn base_string_is_independent_of_param_order(
            mut params in proptest::collection::vec(("[a-z_]{1,8}", ".{0,8}"), 0..6)
        ) {
            let url = Url::parse("https://h.example/p").unwrap();
            let a = signature_base_string("GET", &url, &params);
            params.reverse();
            let b = signature_base_string("GET", &url, &params);
            prop_assert_eq!(a, b);
        }
    }
}
