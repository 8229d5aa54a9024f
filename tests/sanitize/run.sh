#!/usr/bin/env bash
# Run the fast-path tests (tests/test_fast.py, tests/test_differential.py,
# tests/test_mutable_input.py, tests/test_twins.py, tests/test_constants.py) against builds of
# the Cython extension that catch memory errors and undefined behaviour.
#
#   tests/sanitize/run.sh asan [N]      clang AddressSanitizer + UndefinedBehaviorSanitizer
#   tests/sanitize/run.sh valgrind [N]  the normal -O2 build under valgrind memcheck
#   tests/sanitize/run.sh --quick       asan with 40 examples per property (the CI step)
#
# N is PROXYPROTO_DIFF_EXAMPLES (examples per property test; asan default 300, valgrind 30).
# The build happens in a temporary copy of the tree, so the shared development tree and its
# in-place extension are never touched. Python runs with PYTHONMALLOC=malloc so that every
# object allocation goes through the sanitizer (or valgrind), not through pymalloc's pools.
# Exit status: 0 clean, non-zero on a test failure or on any report.
set -euo pipefail

mode="${1:-asan}"
examples="${2:-}"
if [ "$mode" = "--quick" ]; then
    mode=asan
    examples=40
fi
here="$(cd "$(dirname "$0")/../.." && pwd)"
python="$(python3 -c 'import sys; print(sys.executable)')"  # the real binary, not a shim
work="$(mktemp -d "${TMPDIR:-/tmp}/proxyproto-sanitize.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cp -r "$here/src" "$here/tests" "$here/setup.py" "$here/pyproject.toml" "$work/"
rm -f "$work"/src/proxyproto/_fast.*.so "$work"/src/proxyproto/_fast.c

tests=(tests/test_fast.py tests/test_differential.py tests/test_mutable_input.py tests/test_twins.py
       tests/test_constants.py)
# --capture=sys: keep fd 2 for the sanitizer, whose report would be lost with fd capture.
pytest_args=(-q -p no:cacheprovider -x -W "ignore::DeprecationWarning" --capture=sys)

case "$mode" in
asan)
    command -v clang >/dev/null || { echo "clang not found (Debian: apt-get install clang)" >&2; exit 1; }
    export PROXYPROTO_DIFF_EXAMPLES="${examples:-300}"
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
    (
        cd "$work"
        CC=clang LDSHARED="clang -shared" CFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" \
            "$python" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
    )
    runtime="$(clang -print-file-name=libclang_rt.asan-x86_64.so)"
    if [ ! -f "$runtime" ]; then
        echo "the ASan runtime was not found (Debian: apt-get install libclang-rt-14-dev)" >&2
        exit 1
    fi
    echo "== ASan+UBSan build, $PROXYPROTO_DIFF_EXAMPLES examples per property"
    cd "$work"
    # detect_leaks=0: CPython does not free everything at exit; leaks are tested separately
    # (tests/test_fast.py::test_no_leak_on_any_path counts allocated blocks).
    LD_PRELOAD="$runtime" PYTHONMALLOC=malloc PYTHONPATH="$work/src" \
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$python" -c 'import proxyproto._fast as f, sys; assert f.__file__.startswith(sys.argv[1]), f.__file__' "$work"
    LD_PRELOAD="$runtime" PYTHONMALLOC=malloc PYTHONPATH="$work/src" \
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1" \
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
        "$python" -m pytest "${pytest_args[@]}" "${tests[@]}"
    ;;
valgrind)
    export PROXYPROTO_DIFF_EXAMPLES="${examples:-30}"
    (cd "$work" && "$python" setup.py -q build_ext --inplace >build.log 2>&1) || {
        cat "$work/build.log"
        exit 1
    }
    echo "== valgrind memcheck, $PROXYPROTO_DIFF_EXAMPLES examples per property"
    cd "$work"
    # CPython 3.11 itself trips memcheck (int.from_bytes -> maybe_small_long), so every
    # report goes to XML files (one per process) and only those in our module count.
    status=0
    PYTHONMALLOC=malloc PYTHONPATH="$work/src" valgrind --quiet --xml=yes \
        --xml-file="$work/memcheck.%p.xml" --leak-check=no --track-origins=yes \
        "$python" -m pytest "${pytest_args[@]}" "${tests[@]}" || status=$?
    "$python" - "$work" <<'PY'
import glob
import re
import sys

# A report is ours when _fast is in the failing stack or in the stack of the allocation
# the bad value came from (--track-origins), before control goes back to Python bytecode:
# fallback code that _fast calls is not ours. Exit-time leak records are skipped (leaks
# are tested by counting allocated blocks).
def in_fast(stack: str) -> bool:
    for frame in re.findall(r"<frame>.*?</frame>", stack, re.S):
        if "<fn>_PyEval" in frame:  # Python code runs (or is torn down) from here on
            return False
        if "proxyproto/_fast" in frame:
            return True
    return False


errors = []
for path in glob.glob(f"{sys.argv[1]}/memcheck.*.xml"):
    with open(path, errors="replace") as xml:
        errors += re.findall(r"<error>.*?</error>", xml.read(), re.S)
ours = [
    error
    for error in errors
    if not re.search(r"<kind>Leak_", error)
    and any(in_fast(stack) for stack in re.findall(r"<stack>.*?</stack>", error, re.S))
]
print(f"valgrind: {len(errors)} report(s) in all, {len(ours)} in proxyproto._fast")
for error in ours:
    print(re.sub(r"\s*\n\s*", " ", error)[:4000])
sys.exit(1 if ours else 0)
PY
    [ "$status" -eq 0 ] || exit "$status"
    ;;
*)
    echo "usage: $0 [asan|valgrind|--quick] [examples]" >&2
    exit 2
    ;;
esac
echo "== clean: no sanitizer report"
