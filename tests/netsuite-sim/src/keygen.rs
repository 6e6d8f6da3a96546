//! Key generation for an OAuth 2.0 M2M setup, and the matching connector configuration.

use std::path::Path;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::SecretString;

use crate::error::SimError;
use crate::state::M2mRegistration;

/// A freshly generated M2M credential set: what NetSuite's "OAuth 2.0 Client Credentials (M2M)
/// Setup" would show (client ID, certificate ID) plus the key pair.
#[derive(Debug, Clone)]
pub struct M2mSetup {
    /// Integration client ID (64 hex characters, like NetSuite's).
    pub client_id: String,
    /// Certificate ID, the JWT `kid`.
    pub certificate_id: String,
    /// `PS256` or `ES256`.
    pub algorithm: String,
    /// Private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: SecretString,
    /// Public key, SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Generates an RSA 3072 (`PS256`) or EC P-256 (`ES256`) key pair with a random client ID and
/// certificate ID. Register it with [`crate::SimHandle::register_m2m`] (via
/// [`M2mSetup::registration`]) or `POST /_sim/m2m`.
pub fn generate_m2m_setup(algorithm: &str) -> Result<M2mSetup, SimError> {
    let kg = |e: aws_lc_rs::error::Unspecified| SimError::KeyGen(e.to_string());
    let (private_der, public_der) = match algorithm {
        "PS256" | "PS384" | "PS512" => {
            let kp = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa3072).map_err(kg)?;
            let private: aws_lc_rs::encoding::Pkcs8V1Der<'_> = kp.as_der().map_err(kg)?;
            let public: aws_lc_rs::encoding::PublicKeyX509Der<'_> =
                kp.public_key().as_der().map_err(kg)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        "ES256" => {
            let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(kg)?;
            let private = kp.to_pkcs8v1().map_err(kg)?;
            let public: aws_lc_rs::encoding::PublicKeyX509Der<'_> =
                kp.public_key().as_der().map_err(kg)?;
            (private.as_ref().to_vec(), public.as_ref().to_vec())
        }
        other => {
            return Err(SimError::KeyGen(format!(
                "unsupported algorithm {other}: use PS256 or ES256"
            )));
        }
    };
    let client: [u8; 32] = rand::random();
    let cert: [u8; 24] = rand::random();
    Ok(M2mSetup {
        client_id: hex_lower(&client),
        certificate_id: URL_SAFE_NO_PAD.encode(cert),
        algorithm: algorithm.to_owned(),
        private_key_pem: SecretString::from(pem("PRIVATE KEY", &private_der)),
        public_key_pem: pem("PUBLIC KEY", &public_der),
    })
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl M2mSetup {
    /// The registration to hand to the simulator (public key only).
    pub fn registration(&self) -> M2mRegistration {
        M2mRegistration {
            client_id: self.client_id.clone(),
            certificate_id: self.certificate_id.clone(),
            public_key_pem: self.public_key_pem.clone(),
            public_key_file: None,
            expires_at: None,
        }
    }

    /// The connector configuration for this credential set, as a TOML snippet with the keys of
    /// ml-connector's flat `[netsuite]` section (so it works with `--config`); the private key
    /// is referenced by path, never inlined.
    pub fn connector_toml(
        &self,
        account_id: &str,
        base_url: &str,
        private_key_path: &Path,
    ) -> String {
        format!(
            "[netsuite]\naccount_id = \"{account_id}\"\nbase_url = \"{base_url}\"\nauth = \"m2m\"\nclient_id = \"{}\"\ncertificate_id = \"{}\"\nalgorithm = \"{}\"\nprivate_key_path = \"{}\"\n",
            self.client_id,
            self.certificate_id,
            self.algorithm,
            toml_escape(&private_key_path.display().to_string())
        )
    }
}

/// Escapes a value for a TOML basic string (a Windows path's backslashes, a stray quote).
fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes a private key PEM to `path`, readable by the owner only (0600 on Unix).
pub(crate) fn write_private_key(path: &Path, pem: &SecretString) -> Result<(), SimError> {
    use secrecy::ExposeSecret;
    use std::io::Write;
    let err = |source| SimError::KeyWrite {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(pem.expose_secret().as_bytes()).map_err(err)
}

/// What NetSuite's "OAuth 2.0 Client Credentials (M2M) Setup" page does with an uploaded
/// certificate, as far as the simulator can: reads the X.509 certificate (PEM), accepts RSA 3072
/// or 4096 and EC P-256/384/521 keys only, refuses one already expired, shortens a validity
/// longer than two years to two years from its start, and names a new certificate ID.
/// Returns the registration to store (its `public_key_pem` is the certificate's key).
pub fn registration_from_certificate(
    client_id: &str,
    certificate_pem: &str,
    now_unix: i64,
) -> Result<M2mRegistration, SimError> {
    use x509_parser::prelude::*;
    let bad = |m: String| SimError::Registration(m);
    let client_id = client_id.trim();
    if client_id.is_empty() || client_id.len() > 128 || client_id.contains(char::is_whitespace) {
        return Err(bad(
            "choose the integration record (its client ID) the certificate is for".into(),
        ));
    }
    let (_, block) = parse_x509_pem(certificate_pem.trim().as_bytes()).map_err(|_| {
        bad("the file is not a PEM certificate (-----BEGIN CERTIFICATE-----)".into())
    })?;
    if block.label != "CERTIFICATE" {
        return Err(bad(format!(
            "the file holds a {}, not a certificate: upload the X.509 certificate (.pem, .crt, .cer)",
            block.label
        )));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| bad(format!("the certificate cannot be read: {e}")))?;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(public_key::PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            if bits != 3072 && bits != 4096 {
                return Err(bad(format!(
                    "an RSA key of {bits} bits is not accepted: use RSA 3072 or 4096, or EC 256, 384 or 521"
                )));
            }
        }
        Ok(public_key::PublicKey::EC(point)) => {
            let bits = point.key_size();
            if ![256, 384, 521].contains(&bits) {
                return Err(bad(format!(
                    "an EC key of {bits} bits is not accepted: use EC 256, 384 or 521, or RSA 3072 or 4096"
                )));
            }
        }
        _ => {
            return Err(bad(
                "the certificate's key type is not accepted: use RSA 3072 or 4096, or EC 256, 384 or 521"
                    .into(),
            ));
        }
    }
    let validity = cert.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    if until <= now_unix {
        return Err(bad("the certificate has expired: make a new one".into()));
    }
    const TWO_YEARS: i64 = 730 * 86_400;
    let until = until.min(from + TWO_YEARS);
    let expires = jiff::Timestamp::from_second(until)
        .map_err(|e| bad(format!("the certificate's validity: {e}")))?;
    let cert_id: [u8; 24] = rand::random();
    Ok(M2mRegistration {
        client_id: client_id.to_string(),
        certificate_id: URL_SAFE_NO_PAD.encode(cert_id),
        public_key_pem: pem("PUBLIC KEY", spki.raw),
        public_key_file: None,
        expires_at: Some(expires.to_string()),
    })
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    const NOW: i64 = 1_780_000_000; // 2026-05-28

    fn certificate(
        alg: &'static rcgen::SignatureAlgorithm,
        from: (i32, u8, u8),
        until: (i32, u8, u8),
    ) -> String {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn an_ec_certificate_is_registered_with_a_new_id_and_at_most_two_years() {
        let pem = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, (2026, 5, 1), (2031, 5, 1));
        let reg = registration_from_certificate("client-1", &pem, NOW).unwrap();
        assert_eq!(reg.client_id, "client-1");
        assert!(reg.certificate_id.len() >= 24);
        assert!(reg.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        // Five years asked, two given, from the certificate's start.
        assert_eq!(
            reg.expires_at.as_deref(),
            Some("2028-04-30T00:00:00Z"),
            "{reg:?}"
        );
        let other = registration_from_certificate("client-1", &pem, NOW).unwrap();
        assert_ne!(other.certificate_id, reg.certificate_id);
    }

    #[test]
    fn what_netsuite_refuses_is_refused_with_what_to_do() {
        let expired = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, (2020, 1, 1), (2021, 1, 1));
        let e = registration_from_certificate("c", &expired, NOW).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");

        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let e = registration_from_certificate("c", &key.public_key_pem(), NOW).unwrap_err();
        assert!(e.to_string().contains("not a certificate"), "{e}");

        let e = registration_from_certificate("c", "hello", NOW).unwrap_err();
        assert!(e.to_string().contains("not a PEM certificate"), "{e}");

        let good = certificate(&rcgen::PKCS_ECDSA_P256_SHA256, (2026, 5, 1), (2027, 5, 1));
        let e = registration_from_certificate("", &good, NOW).unwrap_err();
        assert!(e.to_string().contains("client ID"), "{e}");
    }
}
