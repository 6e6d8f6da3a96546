//! Authentication to NetSuite: the account ID's two spellings, OAuth 2.0 client credentials
//! (M2M, preferred) and legacy token-based authentication (TBA, OAuth 1.0a).

pub mod account;
pub mod m2m;
pub mod tba;

pub use account::{AccountId, AccountIdError};
pub use m2m::{
    AccessToken, AlgorithmError, AuthError, M2mAuth, M2mOptions, SigningAlgorithm, TokenStatus,
};
pub use tba::TbaSigner;

use secrecy::SecretString;

/// How the connector proves who it is to NetSuite. `Debug` never shows a secret.
#[derive(Clone)]
pub enum Credentials {
    /// OAuth 2.0 client credentials (machine to machine).
    M2m {
        /// Client ID of the integration record (JWT `iss`).
        client_id: String,
        /// Certificate ID shown by the M2M setup page (JWT `kid`).
        certificate_id: String,
        /// PKCS#8 PEM private key of the uploaded certificate (RSA 3072/4096 or EC P-256/P-384).
        private_key_pem: SecretString,
        /// Signing algorithm; PS256 unless the key is EC.
        algorithm: SigningAlgorithm,
    },
    /// Token-based authentication (OAuth 1.0a, HMAC-SHA256).
    Tba {
        /// Consumer key of the integration record.
        consumer_key: String,
        /// Consumer secret of the integration record.
        consumer_secret: SecretString,
        /// Token ID of the access token.
        token_id: String,
        /// Token secret of the access token.
        token_secret: SecretString,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::M2m {
                client_id,
                certificate_id,
                algorithm,
                ..
            } => f
                .debug_struct("M2m")
                .field("client_id", client_id)
                .field("certificate_id", certificate_id)
                .field("private_key_pem", &"[REDACTED]")
                .field("algorithm", &format_args!("{algorithm}"))
                .finish(),
            Credentials::Tba {
                consumer_key,
                token_id,
                ..
            } => f
                .debug_struct("Tba")
                .field("consumer_key", consumer_key)
                .field("consumer_secret", &"[REDACTED]")
                .field("token_id", token_id)
                .field("token_secret", &"[REDACTED]")
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secrets() {
        let m = Credentials::M2m {
            client_id: "cid".into(),
            certificate_id: "cert".into(),
            private_key_pem: SecretString::from("PRIVATE-KEY-MATERIAL"),
            algorithm: SigningAlgorithm::Es256,
        };
        let t = Credentials::Tba {
            consumer_key: "ck".into(),
            consumer_secret: SecretString::from("CONSUMER-SECRET"),
            token_id: "tid".into(),
            token_secret: SecretString::from("TOKEN-SECRET"),
        };
        let s = format!("{m:?} {t:?}");
        assert!(!s.contains("PRIVATE-KEY-MATERIAL"));
        assert!(!s.contains("CONSUMER-SECRET"));
        assert!(!s.contains("TOKEN-SECRET"));
        assert!(s.contains("cert") && s.contains("ES256") && s.contains("tid"));
    }
}
