#!/usr/bin/env bash
# Agent footprint at idle: `honua serve` in plain-Git mode (no GitHub), one `honua agent` for
# `development` against a minimal stand-in Honua (Python), the example repository as origin. Once the
# agent has applied the first deployment, its RSS and CPU time are sampled for DURATION seconds (CPU:
# its own and that of its child processes, which read the Git ledger and apply).
#   benches/agent_idle.sh [DURATION]     (default 600; needs target/release/honua, python3, and
#   target/release/honua-agent, or AGENT_BIN=target/release/honua AGENT_ARGS=agent for the full binary;
#   AGENT_ENV="NAME=value …" adds to the agent's environment, e.g. HONUA_AGENT_LEDGER_INTERVAL=30)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-600}"
BIN="$PWD/target/release/honua"
AGENT_BIN="${AGENT_BIN:-$PWD/target/release/honua-agent}"
AGENT_ARGS="${AGENT_ARGS:-}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# Origin: the example configuration as a bare repository.
git init -q -b main "$WORK/src" && cp -r examples/honua-config/. "$WORK/src/"
git -C "$WORK/src" add -A && git -C "$WORK/src" -c user.name=b -c user.email=b@x commit -qm base
git clone -q --bare "$WORK/src" "$WORK/origin.git"

# Stand-in Honua: every admin POST (reload), health and each collection by id answer 200.
cat > "$WORK/honua.py" <<'PY'
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def answer(self, body=b"{}"):
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_POST(self): self.answer()
    def do_GET(self): self.answer(json.dumps({"collections": []}).encode())
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/honua.py" 18091 &

export HONUA_DATABASE_URL="sqlite://$WORK/honua.db"
HONUA_LISTEN=127.0.0.1:18090 HONUA_REPOSITORIES="file://$WORK/origin.git" HONUA_POLL_INTERVAL=2 \
  HONUA_DATA_DIR="$WORK/data" HONUA_LOG=warn "$BIN" serve &
sleep 2
TOKEN="$("$BIN" token create --name dev-agent --role agent --environment development 2>/dev/null)"
KEY="$(python3 -c 'import json,urllib.request;print(json.load(urllib.request.urlopen("http://127.0.0.1:18090/api/v1/signing-key"))["public_key"])')"
mkdir -p "$WORK/target" "$WORK/agent"
echo "DB_PASSWORD=bench" > "$WORK/secrets.env"
HONUA_AGENT_SERVER=http://127.0.0.1:18090 HONUA_AGENT_TOKEN="$TOKEN" HONUA_AGENT_ENVIRONMENT=development \
  HONUA_AGENT_PUBLIC_KEY="$KEY" HONUA_AGENT_GIT_URL="file://$WORK/origin.git" HONUA_AGENT_TARGET_DIR="$WORK/target" \
  HONUA_AGENT_HONUA_URL=http://127.0.0.1:18091 \
  HONUA_AGENT_STATE_DIR="$WORK/agent" HONUA_AGENT_SECRETS_FILE="$WORK/secrets.env" HONUA_LOG=warn env ${AGENT_ENV:-} \
  "$AGENT_BIN" $AGENT_ARGS &
AGENT=$!

for _ in $(seq 1 60); do [ -L "$WORK/target/current" ] && break; sleep 1; done
[ -L "$WORK/target/current" ] || { echo "the agent never applied the first deployment" >&2; exit 1; }
ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$AGENT/stat"; }  # its own and its children's (the ledger reads and applies)
HZ=$(getconf CLK_TCK)
START=$(ticks); PEAK=0
for _ in $(seq 1 "$DURATION"); do
  RSS=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status"); [ "$RSS" -gt "$PEAK" ] && PEAK=$RSS
  sleep 1
done
END=$(ticks)
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
echo "agent idle over ${DURATION} s: RSS ${RSS} kB (peak ${PEAK} kB), CPU $(( (END-START) * 1000 / HZ )) ms" \
     "= $(python3 -c "print(f'{($END-$START)/$HZ/$DURATION*100:.3f}')") % of a core"
# Where the resident memory is: file-backed (the binary's pages) versus anonymous (heap, stacks).
awk '/^Rss|^Pss_Anon|^Pss_File|^Anonymous/ {printf "  %s %s kB\n", $1, $2}' "/proc/$AGENT/smaps_rollup"
