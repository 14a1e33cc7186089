#!/usr/bin/env bash
# Writes the fuzz targets' seed inputs into fuzz/seeds/<target> from real material: the examples' config
# repositories, Honua's GitOps sample and metadata samples (valid and invalid), the webhook payloads of
# the tests, and comment commands with the quoting and Unicode tricks a reviewer could try.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds && mkdir -p seeds/config seeds/policy seeds/webhook seeds/comment seeds/hcl
python3 - <<'PY'
import hashlib, hmac, json, pathlib, re

root = pathlib.Path("..").resolve()
shared = (root / ".." / "shared" / "honua").resolve()
# The config target's slots, read from its source so that the two never disagree.
target = (pathlib.Path("fuzz_targets") / "config.rs").read_text()
slots = re.findall(r'"([^"]+)"', target.split("const SLOTS", 1)[1].split("];", 1)[0])

def write(target, name, data):
    (pathlib.Path("seeds") / target / name).write_bytes(data)

def repo_seed(tree):
    parts = [(tree / s).read_bytes() if (tree / s).is_file() else b"" for s in slots]
    return b"\0".join(parts)

for name, tree in [("examples", root / "examples/honua-config"), ("examples-pr", root / "examples/honua-config-pr"),
                   ("honua-sample", shared / "gitops-sample/gitops")]:
    write("config", name, repo_seed(tree))
policy = (root / "examples/honua-config" / slots[0]).read_bytes()
for sample in sorted((shared / "metadata").glob("*/*")):
    write("config", f"metadata-{sample.parent.name}-{sample.stem}", policy + b"\0\0" + sample.read_bytes())
for scenario in sorted((shared / "gitops-sample/gitops-e2e-test/test-scenarios").glob("*.yaml")):
    write("config", f"scenario-{scenario.stem}", policy + b"\0\0" + scenario.read_bytes())

hcl_slots = ["environments/common/honua.hcl", "environments/development/honua.hcl", "environments/production/honua.hcl"]
tree = root / "examples/honua-config-hcl"
write("hcl", "honua-config-hcl", b"\0".join((tree / s).read_bytes() for s in hcl_slots))
for sample in sorted((root / "tests/fixtures/honua-hcl").iterdir()):
    write("hcl", f"honua-{sample.stem}", b"\0\0" + sample.read_bytes())

conditions = [
    "resourcesRemoved > 0", "(resourcesModified + resourcesAdded) > 10", "breakingChanges == true",
    'type == "datasource"', 'action == "removed" && type == "layer"', "!breakingChanges", "resourcesAdded >= -1",
    'id == "cadastre::parcels" || resourcesModified > 3', "((resourcesAdded > 0))", "- -resourcesAdded < 0",
]
for i, text in enumerate(conditions):
    write("policy", f"{i:02}", text.encode())

events = ["pull_request", "push", "issue_comment", "check_suite", "check_run", "installation",
          "installation_repositories", "ping", "pull_request_review"]
for payload in sorted((root / "tests/fixtures/webhooks").glob("*.json")):
    event = payload.stem
    if event not in events:
        continue
    body = payload.read_bytes()
    signature = "sha256=" + hmac.new(b"fuzz-secret", body, hashlib.sha256).hexdigest()
    write("webhook", event, bytes([events.index(event)]) + signature.encode() + b"\n" + body)

comments = [
    "/honua approve", "/honua approve production --breaking", "/honua approve staging production",
    "/honua reject production the layer is not ready", "/honua plan", "/honua help", "/honua", "/honua frobnicate",
    "Looks good.\n\n/honua approve production", "> /honua approve", "```\n/honua approve\n```",
    "~~~\n/honua approve\n~~~", "    /honua approve", "\t/honua approve", "<!-- /honua approve -->",
    "<!--\n/honua approve\n-->", "\uff0fhonua approve", "/honua\u200b approve", "\u202e/honua approve",
    "/honua approve pr\u043eduction", "/honua approve production\r\n/honua reject production",
    "> quote\n/honua approve", "```\nunclosed fence\n/honua approve", "/honua approve " + "x" * 70,
]
for i, text in enumerate(comments):
    write("comment", f"{i:02}", text.encode())
PY
echo "seeds: $(ls seeds/hcl | wc -l) hcl, $(ls seeds/config | wc -l) config, $(ls seeds/policy | wc -l) policy, $(ls seeds/webhook | wc -l) webhook, $(ls seeds/comment | wc -l) comment"
