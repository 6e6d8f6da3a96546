//! `ml-connector credentials`: secrets sealed in the store under the operator's master key
//! (`MLC_MASTER_KEY` or `MLC_MASTER_KEY_FILE`). Secrets are read from standard input or a file,
//! never from an argument (arguments show up in `ps` and shell history), and never printed.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use mlc_store::ConnectionStore;
use mlc_store::sealed::{MasterKey, SealError};
use zeroize::Zeroizing;

use super::events::format_time;

// The names each secret is stored under (defined by the service, which reads them back).
use mlc_service::credentials::names;

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Store a secret, read from standard input (or --from-file).
    #[command(subcommand)]
    Set(SetCommand),
    /// Names of the stored credentials and when each was set (never the values).
    List,
    /// Write a new random master key to a new file (mode 0600).
    NewKey {
        /// Where to write it; must not exist.
        path: PathBuf,
    },
    /// Re-encrypt every stored credential under a new master key, in one transaction.
    RotateKey {
        /// The new key (64 hex characters or base64); created with a fresh key when missing.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SetCommand {
    /// The Stripe secret (sk_…) or restricted (rk_…) key.
    Stripe {
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// Webhook signing secrets (whsec_…), one per line.
    StripeWebhook {
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
    /// NetSuite: the M2M private key (PEM, --from-file) and/or the TBA secrets (--tba: consumer
    /// secret then token secret, one per line on standard input).
    Netsuite {
        #[arg(long)]
        from_file: Option<PathBuf>,
        #[arg(long)]
        tba: bool,
    },
    /// The dashboard's sign-in and GraphQL's operator token (one line, at least 32 characters).
    AdminToken {
        #[arg(long)]
        from_file: Option<PathBuf>,
    },
}

/// The master key from the environment, or an error saying how to give one.
fn master_key() -> anyhow::Result<MasterKey> {
    MasterKey::from_env()?.ok_or_else(|| {
        anyhow::anyhow!(
            "no master key: set MLC_MASTER_KEY (64 hex characters or base64) or \
             MLC_MASTER_KEY_FILE (a file only its owner can read; `ml-connector credentials \
             new-key PATH` writes one)"
        )
    })
}

fn read_input(from_file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    match from_file {
        Some(p) => {
            *text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input")?;
        }
    }
    Ok(text)
}

async fn store_secret(
    store: &ConnectionStore,
    key: &MasterKey,
    name: &str,
    value: &[u8],
) -> anyhow::Result<()> {
    store
        .store_secret(key, name, value)
        .await
        .map_err(anyhow::Error::from)?;
    println!("stored {name}");
    Ok(())
}

/// `credentials new-key FILE`: needs no store (run before one exists, e.g. for a container's
/// secret), so the CLI calls it without opening one.
pub fn new_key(path: &std::path::Path) -> anyhow::Result<()> {
    MasterKey::generate().write_new_file(path)?;
    println!(
        "wrote a new master key to {} (mode 0600); set MLC_MASTER_KEY_FILE={} and keep a \
         copy outside this machine: without it the stored credentials are lost",
        path.display(),
        path.display()
    );
    Ok(())
}

pub async fn run(cmd: &CredentialsCommand, store: &ConnectionStore) -> anyhow::Result<()> {
    match cmd {
        CredentialsCommand::Set(set) => {
            let key = master_key()?;
            let key = Some(&key);
            use mlc_service::credentials as creds;
            match set {
                SetCommand::Stripe { from_file } => {
                    let text = read_input(from_file.as_deref())?;
                    creds::set_stripe_key(store, key, &text).await?;
                    println!("stored {}", names::STRIPE_API_KEY);
                    Ok(())
                }
                SetCommand::AdminToken { from_file } => {
                    let text = read_input(from_file.as_deref())?;
                    let t = text.trim();
                    if t.len() < mlc_service::config::ADMIN_TOKEN_MIN_LEN
                        || t.contains(char::is_whitespace)
                    {
                        anyhow::bail!(
                            "the admin token must be one line of at least {} characters without \
                             spaces, e.g. from `openssl rand -hex 32` (the value is not shown)",
                            mlc_service::config::ADMIN_TOKEN_MIN_LEN
                        );
                    }
                    store_secret(
                        store,
                        key.context("master key")?,
                        names::ADMIN_TOKEN,
                        t.as_bytes(),
                    )
                    .await
                }
                SetCommand::StripeWebhook { from_file } => {
                    let text = read_input(from_file.as_deref())?;
                    let lines: Vec<&str> = text.lines().collect();
                    let n = creds::set_webhook_secrets(store, key, &lines).await?;
                    println!(
                        "stored {} ({n} secret{})",
                        names::STRIPE_WEBHOOK_SECRETS,
                        if n == 1 { "" } else { "s" }
                    );
                    Ok(())
                }
                SetCommand::Netsuite { from_file, tba } => {
                    if from_file.is_none() && !tba {
                        anyhow::bail!(
                            "give --from-file PATH (the M2M private key, PEM) and/or --tba \
                             (consumer secret and token secret on standard input)"
                        );
                    }
                    if let Some(p) = from_file {
                        let pem = read_input(Some(p))?;
                        creds::set_netsuite_private_key(store, key, &pem)
                            .await
                            .with_context(|| p.display().to_string())?;
                        println!("stored {}", names::NETSUITE_PRIVATE_KEY);
                    }
                    if *tba {
                        let text = read_input(None)?;
                        let lines: Vec<&str> = text
                            .lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .collect();
                        let [consumer, token] = lines.as_slice() else {
                            anyhow::bail!(
                                "--tba reads two lines from standard input: the consumer secret, \
                                 then the token secret"
                            );
                        };
                        creds::set_netsuite_tba(store, key, consumer, token).await?;
                        println!(
                            "stored {} and {}",
                            names::NETSUITE_CONSUMER_SECRET,
                            names::NETSUITE_TOKEN_SECRET
                        );
                    }
                    Ok(())
                }
            }
        }
        CredentialsCommand::List => {
            let list = store.list_credential_names().await?;
            if list.is_empty() {
                println!("no credentials stored");
            }
            for c in list {
                println!("{:<28} set {}", c.name, format_time(c.updated_at));
            }
            Ok(())
        }
        CredentialsCommand::NewKey { path } => new_key(path),
        CredentialsCommand::RotateKey { new_key_file } => {
            let old = master_key()?;
            let new = if new_key_file.exists() {
                MasterKey::from_file(new_key_file)?
            } else {
                let k = MasterKey::generate();
                k.write_new_file(new_key_file)?;
                println!("wrote a new master key to {}", new_key_file.display());
                k
            };
            let moved = store
                .store()
                .rotate_master_key(&old, &new)
                .await
                .map_err(|e| match e {
                    SealError::WrongKey => anyhow::anyhow!(
                        "{e}; nothing was changed (the current key must be in MLC_MASTER_KEY or \
                     MLC_MASTER_KEY_FILE)"
                    ),
                    other => anyhow::Error::from(other),
                })?;
            println!(
                "re-wrapped the data keys of {moved} tenant(s) under the new key (the sealed \
                 credentials themselves are unchanged).\nNext: set \
                 MLC_MASTER_KEY_FILE={} (and unset MLC_MASTER_KEY) for every instance, restart \
                 them, then destroy the old key.",
                new_key_file.display()
            );
            Ok(())
        }
    }
}
