#!/usr/bin/env bash
# The long stress scenarios of RELIABILITY.md against a real `honua serve` process, each with a pass/fail
# exit (see examples/load.rs for what each does and checks):
#   agents            10,000 simulated agents long-polling; time for an approval to reach all of them
#   webhooks          1,000 signed deliveries a second for a minute; time to 202 and queue drain
#   webhooks-faults   the same with GitHub behind a fault proxy (resets, latency, 5xx, rate limits)
#   slowloris         10,000 stalled connections from this separate process while real deliveries come
#
#   benches/load.sh [SCENARIO...]      (default: all four, about 10 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin honua --example load
LOAD=target/release/examples/load
scenarios=("$@")
((${#scenarios[@]})) || scenarios=(agents webhooks webhooks-faults slowloris)
failed=()
for s in "${scenarios[@]}"; do
  echo "== $s ($(date -u +%H:%M:%S))"
  case "$s" in
    agents) args=(agents --agents 10000) ;;
    webhooks) args=(webhooks --rate 1000 --seconds 60) ;;
    webhooks-faults) args=(webhooks --rate 1000 --seconds 60 --faults) ;;
    slowloris) args=(slowloris --connections 10000 --seconds 30) ;;
    *) echo "unknown scenario $s: use agents, webhooks, webhooks-faults or slowloris" >&2; exit 2 ;;
  esac
  "$LOAD" "${args[@]}" || failed+=("$s")
done
if ((${#failed[@]})); then
  echo "FAIL: ${failed[*]}" >&2
  exit 1
fi
echo "PASS: ${scenarios[*]}"
