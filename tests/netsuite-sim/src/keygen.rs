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
