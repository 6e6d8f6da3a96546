//! Stamps the git revision into the binary for `ml-connector --version`. A container build has no
//! `.git`, so it passes the revision in `MLC_GIT_REVISION` (deploy/Dockerfile's `GIT_REVISION`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MLC_GIT_REVISION");
    // A new commit or checkout changes HEAD or the branch it points at.
    for path in ["../.git/HEAD", "../.git/refs/heads", "../.git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let from_env = std::env::var("MLC_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty());
    let revision = from_env
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MLC_GIT_REVISION={revision}");
}
