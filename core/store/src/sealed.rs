//! Credentials at rest: envelope encryption under a master key the operator holds outside the
//! database.
//!
//! The master key (32 bytes) comes from `MLC_MASTER_KEY` (64 hex characters or base64) or from a
//! file named by `MLC_MASTER_KEY_FILE` that only its owner may read. It never encrypts a
//! credential itself: each tenant has a random [`DataKey`], stored *wrapped* by a key derived from
//! the master key with HKDF-SHA256 ([`wrap_data_key`], [`unwrap_data_key`]). The credentials of the
//! tenant's connections are sealed under that data key ([`seal`], [`open`]). Rotating the master key
//! rewraps the data keys only; a wrapped data key that does not open says the master key is wrong.
//!
//! Both envelopes are AES-256-GCM: a 2-byte version prefix ‖ 12-byte random nonce ‖ ciphertext and
//! 16-byte tag. Wrapped data keys start with `k1` and are bound to their tenant by the associated
//! data `mlc/tenant/<tenant>/data-key`; sealed fields start with `a1` and are bound to their tenant,
//! connection and field name by a length-prefixed associated data ([`FieldAad`]), so a ciphertext
//! copied onto another record does not open.
//!
//! Random nonces are safe here: a data key seals a handful of fields per connection, far below the
//! 2^32 messages per key that 96-bit random nonces allow.

use std::path::Path;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use mlc_core::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The environment variable holding the master key itself.
pub const MASTER_KEY_ENV: &str = "MLC_MASTER_KEY";
/// The environment variable naming a file that holds the master key.
pub const MASTER_KEY_FILE_ENV: &str = "MLC_MASTER_KEY_FILE";
/// HKDF `info` for the key that wraps the tenants' data keys.
const WRAP_INFO: &[u8] = b"mlc data-key wrap v1";
/// Version prefix of a wrapped data key.
const WRAPPED_V1: &[u8] = b"k1";
/// Version prefix of a sealed field.
const SEALED_V1: &[u8] = b"a1";
/// Domain tag at the start of a field's associated data.
const FIELD_AAD_V1: &[u8] = b"mlc/field/v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// Errors from loading keys and sealing or opening credentials. Messages never contain key
/// material, plaintext or ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the master key does not open the tenant's data key: wrong MLC_MASTER_KEY? \
         (or MLC_MASTER_KEY_FILE), or the tenant's key row was copied from another tenant"
    )]
    WrongKey,
    #[error(
        "credential `{field}` of connection `{tenant}/{connection}` does not decrypt with its \
         tenant's key: it was copied from another connection or tenant, or it is corrupted; set it \
         again with `ml-connector credentials set --tenant {tenant} --connection {connection}`"
    )]
    Misplaced {
        tenant: String,
        connection: String,
        field: String,
    },
    #[error("the stored wrapped data key is malformed: {0}")]
    Malformed(String),
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

    /// The AEAD that wraps data keys, keyed with a subkey derived from the master key.
    fn wrap_cipher(&self) -> Aes256Gcm {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, self.bytes.as_slice());
        let mut okm = Zeroizing::new([0u8; KEY_LEN]);
        // 32 bytes is far below HKDF-SHA256's limit (255 × 32), so expand cannot fail.
        let _ = hk.expand(WRAP_INFO, okm.as_mut_slice());
        Aes256Gcm::new((&*okm).into())
    }
}

fn bad_format() -> SealError {
    SealError::BadKey("expected 64 hex characters or base64 of 32 bytes".into())
}

/// A tenant's data key (32 bytes): seals its connections' credentials and is stored only wrapped
/// by the master key. Zeroed on drop; its Debug prints nothing of the key.
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh random data key, for a new tenant.
    pub fn generate() -> DataKey {
        DataKey {
            bytes: Zeroizing::new(rand::random()),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.bytes).into())
    }
}

/// The record a sealed field belongs to; authenticated as associated data, so a ciphertext only
/// opens under the same tenant, connection and field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAad<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub field: &'a str,
}

impl FieldAad<'_> {
    /// `mlc/field/v1` then each of tenant, connection and field as a big-endian u64 length and
    /// its bytes: unambiguous whatever the IDs contain.
    fn encode(&self) -> Vec<u8> {
        let parts = [self.tenant_id, self.connection_id, self.field];
        let mut out = Vec::with_capacity(
            FIELD_AAD_V1.len() + parts.iter().map(|p| 8 + p.len()).sum::<usize>(),
        );
        out.extend_from_slice(FIELD_AAD_V1);
        for part in parts {
            out.extend_from_slice(&(part.len() as u64).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    fn misplaced(&self) -> SealError {
        SealError::Misplaced {
            tenant: self.tenant_id.to_string(),
            connection: self.connection_id.to_string(),
            field: self.field.to_string(),
        }
    }
}

/// The associated data binding a wrapped data key to its tenant.
fn data_key_aad(tenant_id: &str) -> Vec<u8> {
    format!("mlc/tenant/{tenant_id}/data-key").into_bytes()
}

/// `prefix` ‖ random nonce ‖ AES-256-GCM of `plaintext` under `cipher` with `aad`.
fn encrypt(
    cipher: &Aes256Gcm,
    prefix: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    let ct = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    let mut out = Vec::with_capacity(prefix.len() + NONCE_LEN + ct.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Why an envelope could not be opened.
enum OpenFailure {
    /// Not our envelope: wrong prefix or too short to hold a nonce and a tag.
    Malformed(&'static str),
    /// Well formed, but the tag does not verify under this key and associated data.
    Rejected,
}

/// Opens what [`encrypt`] made with the same `prefix`, `cipher` and `aad`.
fn decrypt(
    cipher: &Aes256Gcm,
    prefix: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenFailure> {
    let rest = sealed
        .strip_prefix(prefix)
        .ok_or(OpenFailure::Malformed("unknown format version"))?;
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(OpenFailure::Malformed("too short"));
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce: &[u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| OpenFailure::Malformed("too short"))?;
    cipher
        .decrypt(nonce.into(), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| OpenFailure::Rejected)
}

/// Wraps `key` for storage in the tenant's key row.
pub fn wrap_data_key(
    master: &MasterKey,
    tenant_id: &str,
    key: &DataKey,
) -> Result<Vec<u8>, SealError> {
    encrypt(
        &master.wrap_cipher(),
        WRAPPED_V1,
        &data_key_aad(tenant_id),
        key.bytes.as_slice(),
    )
}

/// Unwraps what [`wrap_data_key`] made for `tenant_id`. A well-formed wrapped key that does not
/// open is [`SealError::WrongKey`] (wrong master key, or a key row copied from another tenant);
/// one that is not a wrapped key at all is [`SealError::Malformed`].
pub fn unwrap_data_key(
    master: &MasterKey,
    tenant_id: &str,
    wrapped: &[u8],
) -> Result<DataKey, SealError> {
    let plain = decrypt(
        &master.wrap_cipher(),
        WRAPPED_V1,
        &data_key_aad(tenant_id),
        wrapped,
    )
    .map_err(|f| match f {
        OpenFailure::Malformed(why) => SealError::Malformed(why.to_string()),
        OpenFailure::Rejected => SealError::WrongKey,
    })?;
    let bytes: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| {
        SealError::Malformed(format!(
            "it holds {} bytes, a data key has {KEY_LEN}",
            plain.len()
        ))
    })?;
    Ok(DataKey {
        bytes: Zeroizing::new(bytes),
    })
}

/// Seals one credential field under its tenant's data key, bound to `aad`.
pub fn seal(key: &DataKey, aad: &FieldAad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    encrypt(&key.cipher(), SEALED_V1, &aad.encode(), plaintext)
}

/// Opens what [`seal`] made for `aad`. Any failure (another record's ciphertext, damage, a wrong
/// data key) is [`SealError::Misplaced`] naming the record; a wrong master key is caught earlier,
/// by [`unwrap_data_key`].
pub fn open(
    key: &DataKey,
    aad: &FieldAad<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    decrypt(&key.cipher(), SEALED_V1, &aad.encode(), sealed).map_err(|_| aad.misplaced())
}

/// Opens a field that holds text (UTF-8 required; otherwise [`SealError::Misplaced`]).
pub fn open_string(
    key: &DataKey,
    aad: &FieldAad<'_>,
    sealed: &[u8],
) -> Result<SecretString, SealError> {
    let bytes = open(key, aad, sealed)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| aad.misplaced())?;
    Ok(SecretString::from(text.to_string()))
}

/// Exposes a secret's bytes for sealing (kept here so callers need not import `secrecy`).
pub fn secret_bytes(s: &SecretString) -> &[u8] {
    s.expose_secret().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const AAD: FieldAad<'static> = FieldAad {
        tenant_id: "acme",
        connection_id: "stripe-live",
        field: "stripe.api_key",
    };

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// The key's bytes as they could leak through a formatter: hex (either case) or base64.
    fn renderings(bytes: &[u8]) -> Vec<String> {
        vec![
            hex::encode(bytes),
            hex::encode_upper(bytes),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            format!("{bytes:?}"),
        ]
    }

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
    fn key_file_round_trip_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = MasterKey::generate();
        k.write_new_file(&path).unwrap();
        assert_eq!(*MasterKey::from_file(&path).unwrap().bytes, *k.bytes);
        assert!(matches!(
            k.write_new_file(&path),
            Err(SealError::KeyFile { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = MasterKey::from_file(&path).unwrap_err();
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let master = MasterKey::generate();
        let data = DataKey::generate();
        let (m, d) = (format!("{master:?}"), format!("{data:?}"));
        assert_eq!(m, "MasterKey(<redacted>)");
        assert_eq!(d, "DataKey(<redacted>)");
        for r in renderings(master.bytes.as_slice()) {
            assert!(!m.contains(&r));
        }
        for r in renderings(data.bytes.as_slice()) {
            assert!(!d.contains(&r));
        }
    }

    #[test]
    fn seal_open_round_trip_hides_plaintext_and_uses_fresh_nonces() {
        let key = DataKey::generate();
        let secret = b"sk_test_51PlaintextMustNeverBeOnDisk";
        let a = seal(&key, &AAD, secret).unwrap();
        let b = seal(&key, &AAD, secret).unwrap();
        assert!(a.starts_with(SEALED_V1));
        assert_eq!(a.len(), 2 + NONCE_LEN + secret.len() + TAG_LEN);
        assert!(!contains(&a, secret));
        assert!(!contains(&a, b"sk_test"));
        assert_ne!(a, b, "two seals of the same plaintext must differ");
        assert_eq!(open(&key, &AAD, &a).unwrap().as_slice(), secret);
        assert_eq!(open(&key, &AAD, &b).unwrap().as_slice(), secret);
        let s = open_string(&key, &AAD, &a).unwrap();
        assert_eq!(secret_bytes(&s), secret);
        assert_eq!(
            open(&key, &AAD, &seal(&key, &AAD, b"").unwrap())
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn ciphertext_under_another_record_is_misplaced_and_named() {
        let key = DataKey::generate();
        let sealed = seal(&key, &AAD, b"hunter2").unwrap();
        let others = [
            FieldAad {
                connection_id: "stripe-test",
                ..AAD
            },
            FieldAad {
                tenant_id: "globex",
                ..AAD
            },
            FieldAad {
                field: "netsuite.token_secret",
                ..AAD
            },
            // Same bytes, other split: the length prefixes keep these apart.
            FieldAad {
                tenant_id: "acmestripe",
                connection_id: "-live",
                ..AAD
            },
        ];
        for other in others {
            let e = open(&key, &other, &sealed).unwrap_err();
            match &e {
                SealError::Misplaced {
                    tenant,
                    connection,
                    field,
                } => {
                    assert_eq!(
                        (tenant.as_str(), connection.as_str(), field.as_str()),
                        (other.tenant_id, other.connection_id, other.field)
                    );
                }
                e => panic!("expected Misplaced, got {e:?}"),
            }
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{}`", other.field)), "{msg}");
            assert!(
                msg.contains(&format!(
                    "ml-connector credentials set --tenant {} --connection {}",
                    other.tenant_id, other.connection_id
                )),
                "{msg}"
            );
            assert!(!msg.contains("hunter2"), "{msg}");
        }
        // Another tenant's data key, same record: also Misplaced.
        assert!(matches!(
            open(&DataKey::generate(), &AAD, &sealed),
            Err(SealError::Misplaced { .. })
        ));
        // Invalid UTF-8 through open_string.
        let bin = seal(&key, &AAD, &[0xff, 0xfe]).unwrap();
        assert!(matches!(
            open_string(&key, &AAD, &bin),
            Err(SealError::Misplaced { .. })
        ));
    }

    #[test]
    fn wrap_unwrap_round_trip_and_wrong_master_or_tenant() {
        let master = MasterKey::generate();
        let dk = DataKey::generate();
        let wrapped = wrap_data_key(&master, "acme", &dk).unwrap();
        assert!(wrapped.starts_with(WRAPPED_V1));
        assert!(!contains(&wrapped, dk.bytes.as_slice()));
        assert_ne!(wrapped, wrap_data_key(&master, "acme", &dk).unwrap());
        let back = unwrap_data_key(&master, "acme", &wrapped).unwrap();
        assert_eq!(*back.bytes, *dk.bytes);
        // The unwrapped key opens what the original sealed.
        let sealed = seal(&dk, &AAD, b"x").unwrap();
        assert_eq!(open(&back, &AAD, &sealed).unwrap().as_slice(), b"x");

        let e = unwrap_data_key(&MasterKey::generate(), "acme", &wrapped).unwrap_err();
        assert!(matches!(e, SealError::WrongKey), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("wrong MLC_MASTER_KEY?"), "{msg}");
        assert!(msg.contains("MLC_MASTER_KEY_FILE"), "{msg}");
        assert!(msg.contains("copied from another tenant"), "{msg}");

        assert!(matches!(
            unwrap_data_key(&master, "globex", &wrapped),
            Err(SealError::WrongKey)
        ));
        // A sealed field is not a wrapped key.
        assert!(matches!(
            unwrap_data_key(&master, "acme", &sealed),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn any_flipped_byte_is_refused() {
        let master = MasterKey::generate();
        let dk = DataKey::generate();
        let sealed = seal(&dk, &AAD, b"sk_test_abc").unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                matches!(open(&dk, &AAD, &t), Err(SealError::Misplaced { .. })),
                "byte {i}"
            );
        }
        let wrapped = wrap_data_key(&master, "acme", &dk).unwrap();
        for i in 0..wrapped.len() {
            let mut t = wrapped.clone();
            t[i] ^= 0x80;
            let e = unwrap_data_key(&master, "acme", &t).unwrap_err();
            if i < WRAPPED_V1.len() {
                assert!(matches!(e, SealError::Malformed(_)), "byte {i}: {e:?}");
            } else {
                assert!(matches!(e, SealError::WrongKey), "byte {i}: {e:?}");
            }
        }
    }

    #[test]
    fn truncated_input_is_refused() {
        let master = MasterKey::generate();
        let dk = DataKey::generate();
        let sealed = seal(&dk, &AAD, b"sk_test_abc").unwrap();
        for n in 0..sealed.len() {
            assert!(matches!(
                open(&dk, &AAD, &sealed[..n]),
                Err(SealError::Misplaced { .. })
            ));
        }
        let wrapped = wrap_data_key(&master, "acme", &dk).unwrap();
        for n in 0..wrapped.len() {
            let e = unwrap_data_key(&master, "acme", &wrapped[..n]).unwrap_err();
            if n < WRAPPED_V1.len() + NONCE_LEN + TAG_LEN {
                assert!(matches!(e, SealError::Malformed(_)), "len {n}: {e:?}");
            } else {
                assert!(matches!(e, SealError::WrongKey), "len {n}: {e:?}");
            }
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn classification() {
        use mlc_core::Classify as _;
        assert_eq!(SealError::WrongKey.class(), ErrorClass::NeedsPerson);
        assert_eq!(AAD.misplaced().class(), ErrorClass::NeedsPerson);
        assert_eq!(
            SealError::Malformed("x".into()).class(),
            ErrorClass::NeedsPerson
        );
    }

    /// Arbitrary bytes, half of them behind a valid version prefix so they reach the AEAD.
    fn envelope_like(prefix: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..96)).prop_map(
            move |(prefixed, body)| {
                if prefixed {
                    [prefix, body.as_slice()].concat()
                } else {
                    body
                }
            },
        )
    }

    proptest! {
        #[test]
        fn open_never_panics(input in envelope_like(SEALED_V1)) {
            let key = DataKey::generate();
            let misplaced = matches!(open(&key, &AAD, &input), Err(SealError::Misplaced { .. }));
            prop_assert!(misplaced);
            prop_assert!(open_string(&key, &AAD, &input).is_err());
        }

        #[test]
        fn unwrap_never_panics(input in envelope_like(WRAPPED_V1)) {
            let master = MasterKey::generate();
            let r = unwrap_data_key(&master, "acme", &input);
            let refused = matches!(r, Err(SealError::WrongKey | SealError::Malformed(_)));
            prop_assert!(refused);
        }
    }
}
