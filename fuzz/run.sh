#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of config loading + validation (metadata and
# Configuration 2.0), policy conditions,
# webhook parsing and comment-command parsing, each for a fixed budget. The config and policy targets run
# on a 256 KiB stack so recursion bombs overflow at sizes the fuzzer reaches (fuzz_targets/small_stack.rs).
# Exit status 1 when any target found a crash (a stack overflow included), a hang (over 10 s on one
# input) or a memory blow-up (over 2 GB): the input is in fuzz/artifacts/<target>/;
# fix it and add a regression test. New inputs that reach new code are added to the corpus; it is
# committed as fuzz/corpus/<target>.tar.gz (unpacked before a run, minimized and packed again after it).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]     default 60
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")"
budget="${1:-60}"
minimize=false
if [[ "$budget" == "--minimize" ]]; then minimize=true; budget=0; fi
targets=(config hcl policy webhook comment)
declare -A max_len=([config]=262144 [hcl]=262144 [policy]=8192 [webhook]=131072 [comment]=70000)
flags=(-s none --debug-assertions)

# The committed corpus, packed: one archive per target, files in name order, no timestamps.
unpack() { [[ -d "corpus/$1" ]] || { mkdir -p "corpus/$1"; [[ ! -f "corpus/$1.tar.gz" ]] || tar -xzf "corpus/$1.tar.gz" -C corpus; }; }
pack() {
  cargo +nightly fuzz cmin "${flags[@]}" "$1" "corpus/$1" >/dev/null 2>&1
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C corpus -cf - "$1" | gzip -n -9 > "corpus/$1.tar.gz"
}

./seed.sh
cargo +nightly fuzz build "${flags[@]}"
if $minimize; then
  for t in "${targets[@]}"; do unpack "$t"; pack "$t"; done
  exit 0
fi
failed=()
for t in "${targets[@]}"; do
  unpack "$t"
  echo "== $t: ${budget} s"
  dict=(); [[ -f "$t.dict" ]] && dict=(-dict="$t.dict")
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- "${dict[@]}" \
      -max_total_time="$budget" -max_len="${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$t")
  fi
  pack "$t"
  echo "corpus: $(find "corpus/$t" -type f | wc -l) inputs, $(du -h "corpus/$t.tar.gz" | cut -f1) packed"
done
if ((${#failed[@]})); then
  echo "FAIL: ${failed[*]}: see fuzz/artifacts/" >&2
  exit 1
fi
echo "PASS: ${targets[*]}, ${budget} s each, no crash"
