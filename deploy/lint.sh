#!/usr/bin/env bash
# Checks what deploy/ holds with the linters this machine has, and says plainly what it could not check.
#   deploy/lint.sh            (HONUA_BIN: the binary the systemd units are verified against)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(realpath "${HONUA_BIN:-target/debug/honua}")"
failed=0
skipped=()

# systemd units: systemd-analyze verify, against this build of the binary.
if command -v systemd-analyze >/dev/null; then
  units="$(mktemp -d)"
  trap 'rm -rf "$units"' EXIT
  for unit in deploy/systemd/*.service; do
    sed "s|/usr/local/bin/honua|$BIN|" "$unit" > "$units/$(basename "$unit")"
  done
  # Missing EnvironmentFile/config paths are the installer's to create; anything else is a finding.
  if out="$(systemd-analyze verify "$units"/*.service 2>&1)"; then
    echo "ok    systemd units: systemd-analyze verify"
  else
    echo "$out" >&2
    echo "FAIL  systemd units" >&2
    failed=1
  fi
else
  skipped+=("systemd units (no systemd-analyze)")
fi

# YAML (all documents), JSON, and Kubernetes schemas where kubernetes-validate is installed.
python3 - <<'PY' || failed=1
import glob, json, sys
import yaml
ok = True
# Helm templates are Go templates, not YAML: the chart's test lints and renders them with Helm.
for path in sorted(p for p in glob.glob("deploy/**/*.yaml", recursive=True) + glob.glob("deploy/**/*.yml", recursive=True)
                   + glob.glob(".github/workflows/*.yml") + ["action.yml"] if "/templates/" not in p):
    try:
        docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        print(f"FAIL  {path}: {e}", file=sys.stderr); ok = False; continue
    print(f"ok    {path}: {len(docs)} YAML document(s)")
for path in sorted(glob.glob("deploy/**/*.json", recursive=True)):
    try:
        json.load(open(path)); print(f"ok    {path}: JSON")
    except ValueError as e:
        print(f"FAIL  {path}: {e}", file=sys.stderr); ok = False
try:
    import kubernetes_validate
except ImportError:
    print("skip  Kubernetes schemas: pip install kubernetes-validate to check them")
else:
    for path in sorted(glob.glob("deploy/kubernetes/*.yaml")):
        for doc in yaml.safe_load_all(open(path)):
            try:
                kubernetes_validate.validate(doc, "1.30.0", strict=True)
            except Exception as e:
                print(f"FAIL  {path}: {doc.get('kind')}/{doc['metadata']['name']}: {e}", file=sys.stderr); ok = False
        print(f"ok    {path}: Kubernetes 1.30 schemas (strict)")
sys.exit(0 if ok else 1)
PY

# Dockerfiles: hadolint if installed; otherwise the rules that matter here, checked by hand.
if command -v hadolint >/dev/null; then
  hadolint deploy/Dockerfile deploy/Dockerfile.release && echo "ok    Dockerfiles: hadolint" || failed=1
else
  skipped+=("hadolint (not installable from Debian's packages)")
  for f in deploy/Dockerfile deploy/Dockerfile.release; do
    grep -q '^USER 10001' "$f" && grep -q '^HEALTHCHECK' "$f" && ! grep -q ':latest' "$f" \
      && echo "ok    $f: non-root USER, HEALTHCHECK, no :latest base" \
      || { echo "FAIL  $f: needs a non-root USER and a HEALTHCHECK, and no :latest base" >&2; failed=1; }
  done
  # The source build caches its dependencies in a layer of their own (cargo-chef's recipe).
  grep -q 'cargo chef cook' deploy/Dockerfile && grep -q 'AS build' deploy/Dockerfile \
    && echo "ok    deploy/Dockerfile: dependencies cooked in their own layer before the sources are copied" \
    || { echo "FAIL  deploy/Dockerfile: build the dependencies from a cargo-chef recipe first" >&2; failed=1; }
fi

for s in "${skipped[@]}"; do echo "skip  $s"; done
exit "$failed"
