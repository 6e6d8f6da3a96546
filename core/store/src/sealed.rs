//! Credentials at rest: sealing with a master key the operator holds outside the database.
//!
//! The master key (32 bytes) comes from `MLC_MASTER_KEY` (64 hex characters or base64) or from a
//! file named by `MLC_MASTER_KEY_FILE` that only its owner may read. A subkey for credentials is
//! derived with HKDF-SHA256, so the same master key can later serve other purposes without reuse.
//!
//! Envelope: `v1` ‖ 24-byte random nonce ‖ XChaCha20-Poly1305 ciphertext and tag. The record's
//! identity (`credentials/<name>`) is the associated data, so a ciphertext copied onto another
//! record does not open. A sealed "key check" row lets a wrong key be told apart from corruption.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mlc_core::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The environment variable holding the master key itself.
pub const MASTER_KEY_ENV: &str = "MLC_MASTER_KEY";
/// The environment variable naming a file that holds the master key.
pub const MASTER_KEY_FILE_ENV: &str = "MLC_MASTER_KEY_FILE";
/// HKDF `info` for the credentials subkey.
const CREDENTIALS_INFO: &[u8] = b"mlc credentials v1";
const ENVELOPE_V1: &[u8] = b"v1";
const NONCE_LEN: usize = 24;
/// The reserved credential name under which the key check is stored.
pub const KEY_CHECK_NAME: &str = "_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"ml-connector key check v1";

/// Errors from loading keys and sealing or opening credentials. Messages never contain key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the master key does not open the stored credentials: wrong MLC_MASTER_KEY? \
         (or MLC_MASTER_KEY_FILE)"
    )]
    WrongKey,
    #[error(
        "stored credential `{0}` does not decrypt although the master key is right: it is \
         corrupted or was copied from another record; set it again with `ml-connector credentials set`"
    )]
    Corrupted(String),
    #[error("the master key is not valid: {0}")]
    BadKey(String),
    #[error("master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(
        "credentials are stored in the database but no master key is given: set MLC_MASTER_KEY \
         (64 hex characters or base64) or MLC_MASTER_KEY_FILE"
    )]
    MissingKey,
    #[error("encryption failed")]
    Encrypt,
    #[error(transparent)]
    Store(#[from] crate::model::StoreError),
}

impl mlc_core::Classify for SealError {
    fn class(&self) -> ErrorClass {
        match self {
            SealError::Store(e) => e.class(),
            _ => ErrorClass::NeedsPerson,
        }
    }
}

/// The 32-byte master key. Zeroed on drop; its Debug prints nothing of the key.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// A fresh random key (for `rotate-key` and tests).
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(rand::random())
    }

    /// Parses 64 hex characters or base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Result<MasterKey, SealError> {
        let text = text.trim();
        let decoded: Zeroizing<Vec<u8>> =
            if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                Zeroizing::new(hex::decode(text).map_err(|_| bad_format())?)
            } else {
                let engines = [
                    base64::engine::general_purpose::STANDARD,
                    base64::engine::general_purpose::STANDARD_NO_PAD,
                    base64::engine::general_purpose::URL_SAFE,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD,
                ];
                engines
                    .iter()
                    .find_map(|e| e.decode(text).ok())
                    .map(Zeroizing::new)
                    .ok_or_else(bad_format)?
            };
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| {
            SealError::BadKey(format!(
                "it decodes to {} bytes, 32 are needed (64 hex characters)",
                decoded.len()
            ))
        })?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Reads a key file; on unix it must not be readable or writable by group or others.
    pub fn from_file(path: &Path) -> Result<MasterKey, SealError> {
        let shown = path.display().to_string();
        let err = |reason: String| SealError::KeyFile {
            path: shown.clone(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "its mode is {mode:04o}; it must be readable only by its owner \
                     (chmod 600 {shown})"
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read it: {e}")))?,
        );
        MasterKey::parse(&text).map_err(|e| match e {
            SealError::BadKey(reason) => err(reason),
            other => other,
        })
    }

    /// The key from `MLC_MASTER_KEY` or `MLC_MASTER_KEY_FILE` (the former wins), if either is set.
    pub fn from_env() -> Result<Option<MasterKey>, SealError> {
        if let Ok(v) = std::env::var(MASTER_KEY_ENV) {
            let v = Zeroizing::new(v);
            if !v.trim().is_empty() {
                return MasterKey::parse(&v).map(Some);
            }
        }
        match std::env::var_os(MASTER_KEY_FILE_ENV) {
            Some(p) if !p.is_empty() => MasterKey::from_file(Path::new(&p)).map(Some),
            _ => Ok(None),
        }
    }

    /// Writes the key as hex to a new file with mode 0600 (refuses to overwrite).
    pub fn write_new_file(&self, path: &Path) -> Result<(), SealError> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let err = |e: std::io::Error| SealError::KeyFile {
            path: path.display().to_string(),
            reason: format!("cannot create it: {e}"),
        };
        let mut f = opts.open(path).map_err(err)?;
        let text = Zeroizing::new(hex::encode(*self.bytes));
        f.write_all(text.as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)
    }

    /// The AEAD keyed with the credentials subkey.
    fn cipher(&self) -> XChaCha20Poly1305 {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, self.bytes.as_slice());
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit (255 × 32), so expand cannot fail.
        let _ = hk.expand(CREDENTIALS_INFO, okm.as_mut_slice());
        let key = chacha20poly1305::Key::from(*okm);
        XChaCha20Poly1305::new(&key)
    }
}

fn bad_format() -> SealError {
    SealError::BadKey("expected 64 hex characters or base64 of 32 bytes".into())
}

/// The associated data binding a ciphertext to its record.
fn record_id(name: &str) -> Vec<u8> {
    format!("credentials/{name}").into_bytes()
}

/// Seals `plaintext` for the credential `name`.
pub fn seal(key: &MasterKey, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce_bytes: [u8; NONCE_LEN] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let aad = record_id(name);
    let ct = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    let mut out = Vec::with_capacity(ENVELOPE_V1.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(ENVELOPE_V1);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal`] made for `name`. Any failure (wrong key, other record, damage) is
/// [`SealError::Corrupted`]; use [`check_key`] first to tell a wrong key apart.
pub fn open(key: &MasterKey, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let corrupted = || SealError::Corrupted(name.to_string());
    let rest = sealed.strip_prefix(ENVELOPE_V1).ok_or_else(corrupted)?;
    if rest.len() < NONCE_LEN {
        return Err(corrupted());
    }
    let (nonce_bytes, ct) = rest.split_at(NONCE_LEN);
    let nonce_arr: [u8; NONCE_LEN] = nonce_bytes.try_into().map_err(|_| corrupted())?;
    let aad = record_id(name);
    key.cipher()
        .decrypt(&XNonce::from(nonce_arr), Payload { msg: ct, aad: &aad })
        .map(Zeroizing::new)
        .map_err(|_| corrupted())
}

/// Opens a credential that holds text.
pub fn open_string(key: &MasterKey, name: &str, sealed: &[u8]) -> Result<SecretString, SealError> {
    let bytes = open(key, name, sealed)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| SealError::Corrupted(name.to_string()))?;
    Ok(SecretString::from(text.to_string()))
}

/// The key check value to store under [`KEY_CHECK_NAME`].
pub fn key_check(key: &MasterKey) -> Result<Vec<u8>, SealError> {
    seal(key, KEY_CHECK_NAME, KEY_CHECK_PLAINTEXT)
}

/// `Ok` when `key` opens the stored key check; [`SealError::WrongKey`] otherwise.
pub fn check_key(key: &MasterKey, stored_check: &[u8]) -> Result<(), SealError> {
    match open(key, KEY_CHECK_NAME, stored_check) {
        Ok(p) if p.as_slice() == KEY_CHECK_PLAINTEXT => Ok(()),
        _ => Err(SealError::WrongKey),
    }
}

/// Exposes a secret's bytes for sealing (kept here so callers need not import `secrecy`).
pub fn secret_bytes(s: &SecretString) -> &[u8] {
    s.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_and_base64_and_debug_redacts() {
        let k = MasterKey::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(*k.bytes, [0xab; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(*MasterKey::parse(&b64).unwrap().bytes, [7; 32]);
        assert!(!format!("{k:?}").contains("ab"));
        let e = MasterKey::parse("abcd").unwrap_err();
        assert!(e.to_string().contains("32"), "{e}");
    }

    #[test]
    fn round_trip_and_binding_to_record() {
        let k = MasterKey::generate();
        let s = seal(&k, "stripe/api_key", b"sk_test_abc").unwrap();
        assert!(s.starts_with(b"v1"));
        assert_eq!(
            open(&k, "stripe/api_key", &s).unwrap().as_slice(),
            b"sk_test_abc"
        );
        assert!(matches!(
            open(&k, "netsuite/token_secret", &s),
            Err(SealError::Corrupted(n)) if n == "netsuite/token_secret"
        ));
        let check = key_check(&k).unwrap();
        check_key(&k, &check).unwrap();
        let e = check_key(&MasterKey::generate(), &check).unwrap_err();
        assert!(e.to_string().contains("wrong MLC_MASTER_KEY?"), "{e}");
    }
}
