#!/usr/bin/env bash
# Bounded fuzz run of both harnesses; exits non-zero on any finding.
#
#   fuzz/run.sh [SECONDS_PER_HARNESS] [extra libFuzzer flags...]
#
# The committed seeds are read, never written: new inputs go to a scratch corpus, crash
# reproducers to fuzz/findings/. Prints libFuzzer's final stats (executions, exec/s, new
# units, peak RSS) for each harness.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz/findings
status=0
for target in parse encode; do
    mkdir -p "$work/$target"
    echo "== fuzz_$target: ${seconds}s"
    # FUZZ_PRELOAD (set by run_asan.sh): a sanitizer runtime for the python process only
    if ! ${FUZZ_PRELOAD:+env LD_PRELOAD="$FUZZ_PRELOAD"} python3 "fuzz/fuzz_$target.py" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1536 -max_len=8192 \
        -dict=fuzz/proxyproto.dict -artifact_prefix=fuzz/findings/ -print_final_stats=1 \
        "$@" "$work/$target" "fuzz/corpus/$target" >"$work/$target.log" 2>&1; then
        status=1
        tail -n 60 "$work/$target.log"
    fi
    grep -E "^(proxyproto |Done |#[0-9]+[[:space:]]+(INITED|DONE) |INFO: Loaded [0-9]+ modules|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))|INFO: seed corpus" \
        "$work/$target.log" || true
    echo "corpus after the run: $(ls "$work/$target" | wc -l) new units"
done
exit "$status"
