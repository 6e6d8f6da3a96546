//! Independent check: PyJWT (with `cryptography`) verifies the client assertions this crate signs,
//! as NetSuite's own (Java) verifier would. Needs MLC_TEST_PYTHON (see scripts/test.sh).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use common::*;
use mlc_netsuite::{M2mAuth, M2mOptions, SigningAlgorithm};
use secrecy::SecretString;

const VERIFY: &str = r#"
import json, sys, jwt
data = json.load(sys.stdin)
hdr = jwt.get_unverified_header(data["token"])
assert hdr["typ"] == "JWT", hdr
assert hdr["kid"] == data["kid"], hdr
assert hdr["alg"] == data["alg"], hdr
claims = jwt.decode(data["token"], data["public_pem"], algorithms=[data["alg"]],
                    audience=data["aud"], issuer=data["iss"],
                    options={"require": ["exp", "iat", "iss", "aud", "jti"]})
assert claims["scope"] == ["rest_webservices"], claims
assert 0 < claims["exp"] - claims["iat"] < 3600, claims
print("verified")
"#;

fn python() -> Option<String> {
    match std::env::var("MLC_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "MLC_TEST_PYTHON is unset but CI is set: run scripts/test.sh, which creates the venv"
                );
            }
            println!("skipped: MLC_TEST_PYTHON unset");
            None
        }
    }
}

fn check(key: &'static TestKey, alg: SigningAlgorithm, py: &str) {
    let token_url =
        "https://1234567-sb1.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token";
    let auth = M2mAuth::new(
        reqwest::Client::new(),
        token_url.parse().unwrap(),
        CLIENT_ID.into(),
        CERT_ID.into(),
        &SecretString::from(key.pem.clone()),
        alg,
        M2mOptions::default(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = auth.client_assertion(now).unwrap();
    let input = serde_json::json!({
        "token": token, "public_pem": key.public_pem, "alg": alg.as_str(),
        "kid": CERT_ID, "aud": token_url, "iss": CLIENT_ID,
    });
    let mut child = Command::new(py)
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        "PyJWT refused the {alg} assertion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pyjwt_verifies_ps256_and_es256_assertions() {
    let Some(py) = python() else { return };
    check(&RSA_KEY, SigningAlgorithm::Ps256, &py);
    check(&EC_KEY, SigningAlgorithm::Es256, &py);
}
