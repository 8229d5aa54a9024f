#!/usr/bin/env bash
# Fuzz the ASan/UBSan (+ coverage) build of the Cython extension made by build_asan.sh.
#
#   fuzz/run_asan.sh [SECONDS_PER_HARNESS] [extra libFuzzer flags...]
#
# Both harnesses run against the instrumented copy in $ASAN_BUILD (default
# /tmp/proxyproto-asan), differentially against the pure-Python module as usual. Python's
# own allocator is switched to malloc so that ASan sees every object's buffer.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
build="${ASAN_BUILD:-/tmp/proxyproto-asan}"
if [ ! -e "$build/asan_with_fuzzer.so" ]; then
    fuzz/build_asan.sh "$build"
fi
export PYTHONPATH="$build${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONMALLOC=malloc
# Python leaks by design at exit; a real leak shows in robustness/leaks.py instead.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=64"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export FUZZ_PRELOAD="$build/asan_with_fuzzer.so"
env LD_PRELOAD="$FUZZ_PRELOAD" python3 -c 'import proxyproto._fast as m; print(m.__file__)' \
    | grep -q "^$build/" || { echo "the ASan build is not the one imported" >&2; exit 2; }
fuzz/run.sh "$seconds" "$@"
