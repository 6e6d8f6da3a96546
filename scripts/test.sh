#!/usr/bin/env bash
# The whole test suite: every crate, on SQLite always and on PostgreSQL when it is reachable,
# plus the checks by independent clients (the official stripe Python SDK, PyJWT).
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Python venv with the pinned independent clients; reused when the requirements did not change.
venv=.venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum scripts/requirements-test.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== setting up $venv (pinned: scripts/requirements-test.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  echo "$want" > "$stamp"
fi
export MLC_TEST_PYTHON="$PWD/$venv/bin/python"

# PostgreSQL: use TEST_DATABASE_URL if given, else the local server when it answers.
if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
    export TEST_DATABASE_URL="postgres://root@127.0.0.1:5432/test"
  else
    echo "== PostgreSQL is not reachable on 127.0.0.1:5432: running the SQLite half only"
  fi
fi
echo "== TEST_DATABASE_URL=${TEST_DATABASE_URL:-<unset>}"

cargo test --workspace --locked "$@"

# The GraphQL operations validate against the schema, and the schema breaks nothing released.
scripts/check-graphql.sh

# deploy/: no Docker daemon or cluster here, so the Dockerfile is linted (pinned hadolint), the
# compose file and the rendered kustomize overlays validated against their schemas (pinned), and
# the properties that matter checked (probes, drain time, no master key literal).
scripts/check-deploy.sh

# The dashboard in a real browser: Debian's Chromium (headless) driven by playwright-core (pinned in
# tests/browser/package-lock.json), against `ml-connector demo --dashboard` built above.
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "error: $chromium_bin is missing; the browser tests need it: apt-get install chromium chromium-driver (.ci/run does this)" >&2
  exit 1
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || \
   [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  echo "== installing the browser test driver (npm ci in tests/browser)"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
echo "== browser tests (Chromium $("$chromium_bin" --version 2>/dev/null | awk '{print $2}'))"
cargo build --locked --bin ml-connector
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
(cd tests/browser && MLC_BIN="$target_dir/debug/ml-connector" CHROMIUM="$chromium_bin" \
  node --test --test-concurrency=1 app.test.mjs wizard.test.mjs)
