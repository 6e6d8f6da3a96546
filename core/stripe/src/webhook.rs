//! `Stripe-Signature` verification, as Stripe's official libraries do it.
//!
//! The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=<hex>]`. The signed payload is
//! `"<t>." + raw body`, HMAC-SHA256 keyed by the whole `whsec_…` string. Any `v1` from any
//! configured secret is accepted (secret rotation); `v0` and unknown schemes are ignored to prevent
//! downgrade attacks. The signature is checked before the age, as stripe-python and stripe-node
//! do, so a correctly signed replay is reported as "too old" rather than as forged.

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Stripe's SDKs' default tolerance.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a delivery was refused. The messages never include a secret or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    MissingHeader,
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(&'static str),
    #[error("no signatures found with expected scheme v1")]
    NoV1Signature,
    #[error("no v1 signature matches the payload for any configured webhook secret")]
    NoValidSignature,
    #[error("timestamp {timestamp} is outside the tolerance zone ({tolerance_secs} s)")]
    TooOld { timestamp: i64, tolerance_secs: i64 },
}

impl SignatureError {
    /// A short machine-readable code for API responses and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader => "missing_signature_header",
            SignatureError::Malformed(_) => "malformed_signature_header",
            SignatureError::NoV1Signature => "no_v1_signature",
            SignatureError::NoValidSignature => "no_valid_signature",
            SignatureError::TooOld { .. } => "timestamp_too_old",
        }
    }
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<String>,
}

impl SignatureHeader {
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        let header = header.trim();
        if header.is_empty() {
            return Err(SignatureError::MissingHeader);
        }
        let mut timestamp = None;
        let mut v1 = Vec::new();
        for part in header.split(',') {
            let Some((key, value)) = part.trim().split_once('=') else {
                return Err(SignatureError::Malformed("every element must be key=value"));
            };
            match key {
                "t" if timestamp.is_none() => {
                    let t = value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?;
                    timestamp = Some(t);
                }
                "v1" => v1.push(value.to_string()),
                // v0 is Stripe's fake test-mode scheme; other keys are reserved for the future.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed(
            "unable to extract timestamp (t=)",
        ))?;
        if v1.is_empty() {
            return Err(SignatureError::NoV1Signature);
        }
        Ok(SignatureHeader { timestamp, v1 })
    }
}

/// Verifies deliveries against one or more webhook signing secrets.
#[derive(Clone)]
pub struct WebhookVerifier {
    secrets: Vec<SecretString>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl WebhookVerifier {
    pub fn new(secrets: Vec<SecretString>, tolerance_secs: i64) -> Self {
        WebhookVerifier {
            secrets,
            tolerance_secs,
        }
    }

    /// Verifies `payload` (the raw body, byte-exact) against `header` at time `now` (unix seconds).
    pub fn verify(
        &self,
        payload: &[u8],
        header: Option<&str>,
        now: i64,
    ) -> Result<SignatureHeader, SignatureError> {
        let parsed = SignatureHeader::parse(header.ok_or(SignatureError::MissingHeader)?)?;
        let matched = self.secrets.iter().any(|secret| {
            let expected = compute_signature(secret.expose_secret(), parsed.timestamp, payload);
            parsed
                .v1
                .iter()
                .any(|candidate| bool::from(candidate.as_bytes().ct_eq(expected.as_bytes())))
        });
        if !matched {
            return Err(SignatureError::NoValidSignature);
        }
        if now.saturating_sub(parsed.timestamp) > self.tolerance_secs {
            return Err(SignatureError::TooOld {
                timestamp: parsed.timestamp,
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok(parsed)
    }
}

/// Lowercase hex HMAC-SHA256 of `"<t>." + payload` keyed by `secret` (the whole `whsec_…` string).
pub fn compute_signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// A `Stripe-Signature` header value for `payload`, signed with every secret given (as Stripe
/// does while an old secret is still active). Used by tests, the `sign` command and benchmarks.
pub fn signature_header(secrets: &[&str], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&compute_signature(secret, timestamp, payload));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;

    fn verifier(secrets: &[&str], tol: i64) -> WebhookVerifier {
        WebhookVerifier::new(
            secrets
                .iter()
                .map(|s| SecretString::from(s.to_string()))
                .collect(),
            tol,
        )
    }

    fn shared_vectors() -> serde_json::Value {
        let raw = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/stripe/webhook_signature_vectors.json"
        ))
        .expect("shared/fixtures beside the project checkout");
        serde_json::from_str(&raw).expect("vectors are JSON")
    }

    #[test]
    fn shared_signature_vectors() {
        let doc = shared_vectors();
        let vectors = doc["signature_vectors"].as_array().expect("vectors");
        assert!(vectors.len() >= 8);
        for v in vectors {
            let t = v["timestamp"].as_i64().unwrap();
            let body = v["payload"].as_str().unwrap().as_bytes();
            let header = v["header"].as_str().unwrap();
            let expect_valid = v["expect"].as_str().unwrap().starts_with("valid");
            let secrets: Vec<&str> = match v["secrets_that_verify"].as_array() {
                Some(list) => list.iter().map(|s| s.as_str().unwrap()).collect(),
                None => vec![v["secret"].as_str().unwrap()],
            };
            if let Some(expected) = v["expected_v1"].as_str() {
                assert_eq!(
                    compute_signature(secrets[0], t, body),
                    expected,
                    "{}",
                    v["name"]
                );
            }
            for secret in secrets {
                let got = verifier(&[secret], 300).verify(body, Some(header), t);
                assert_eq!(got.is_ok(), expect_valid, "{}: {got:?}", v["name"]);
            }
        }
        // The pretty-printed vector is from 2017: with the default tolerance it is too old today.
        let old = &vectors[1];
        let got = verifier(&[SECRET], DEFAULT_TOLERANCE_SECS).verify(
            old["payload"].as_str().unwrap().as_bytes(),
            old["header"].as_str(),
            1_800_000_000,
        );
        assert!(matches!(got, Err(SignatureError::TooOld { .. })), "{got:?}");
    }

    #[test]
    fn stripe_node_raw_hmac_vectors() {
        let doc = shared_vectors();
        for v in doc["raw_hmac_vectors"].as_array().expect("raw vectors") {
            let mut mac =
                <HmacSha256 as KeyInit>::new_from_slice(v["key"].as_str().unwrap().as_bytes())
                    .unwrap();
            mac.update(v["message"].as_str().unwrap().as_bytes());
            assert_eq!(
                hex::encode(mac.finalize().into_bytes()),
                v["hmac_sha256_hex"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn rotation_accepts_either_secret() {
        let header = signature_header(&["whsec_old", "whsec_new"], 100, BODY);
        verifier(&["whsec_new"], 300)
            .verify(BODY, Some(&header), 100)
            .unwrap();
        verifier(&["whsec_old"], 300)
            .verify(BODY, Some(&header), 100)
            .unwrap();
        let one = signature_header(&["whsec_new"], 100, BODY);
        verifier(&["whsec_old", "whsec_new"], 300)
            .verify(BODY, Some(&one), 100)
            .unwrap();
    }

    #[test]
    fn sdk_edge_cases() {
        let v = verifier(&[SECRET], 10);
        let now = 1_700_000_000;
        let good = signature_header(&[SECRET], now, BODY);
        assert!(v.verify(BODY, Some(&good), now).is_ok());
        assert_eq!(
            v.verify(BODY, None, now),
            Err(SignatureError::MissingHeader)
        );
        assert_eq!(
            v.verify(BODY, Some(""), now),
            Err(SignatureError::MissingHeader)
        );
        for bad in ["bad_header", "v1,t=1", "t="] {
            assert!(
                matches!(
                    v.verify(BODY, Some(bad), now),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
        // Only a v0 signature: nothing to check.
        let v0 = format!("t={now},v0={}", compute_signature(SECRET, now, BODY));
        assert_eq!(
            v.verify(BODY, Some(&v0), now),
            Err(SignatureError::NoV1Signature)
        );
        let wrong = format!("t={now},v1=bad_signature");
        assert_eq!(
            v.verify(BODY, Some(&wrong), now),
            Err(SignatureError::NoValidSignature)
        );
        // A bad extra signature beside a good one is fine.
        let extra = format!("{good},v1=bad_signature");
        assert!(v.verify(BODY, Some(&extra), now).is_ok());
        // now-15 with tolerance 10 is too old; with 20 it is fine.
        let old = signature_header(&[SECRET], now - 15, BODY);
        assert!(matches!(
            v.verify(BODY, Some(&old), now),
            Err(SignatureError::TooOld { .. })
        ));
        assert!(
            verifier(&[SECRET], 20)
                .verify(BODY, Some(&old), now)
                .is_ok()
        );
        // Future timestamps are accepted, as the SDKs do.
        let future = signature_header(&[SECRET], now + 3600, BODY);
        assert!(v.verify(BODY, Some(&future), now).is_ok());
        // A modified body fails.
        assert_eq!(
            v.verify(b"{}", Some(&good), now),
            Err(SignatureError::NoValidSignature)
        );
        // Secrets are compared exactly: a trailing space is a different key.
        assert_eq!(
            verifier(&["whsec_test_secret "], 10).verify(BODY, Some(&good), now),
            Err(SignatureError::NoValidSignature)
        );
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let s = format!("{:?}", verifier(&[SECRET], 300));
        assert!(!s.contains("whsec"), "{s}");
    }
}
