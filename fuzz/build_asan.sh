#!/usr/bin/env bash
# Build a copy of proxyproto with its Cython extension compiled by clang under
# AddressSanitizer (+ UndefinedBehaviorSanitizer) and, with COVERAGE=1, libFuzzer's
# coverage instrumentation (-fsanitize=fuzzer-no-link) so that atheris also sees the C
# code's edges. The working tree is not touched: the copy goes to OUT (default
# /tmp/proxyproto-asan). Run the harnesses against it with fuzz/run_asan.sh.
#
#   fuzz/build_asan.sh [OUT]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-/tmp/proxyproto-asan}"
sanitizers="address,undefined"
if [ "${COVERAGE:-1}" = "1" ]; then
    sanitizers="$sanitizers,fuzzer-no-link"
fi
rm -rf "$out"
mkdir -p "$out"
cp -r "$repo/src/proxyproto" "$out/proxyproto"
rm -f "$out"/proxyproto/_fast*.so "$out"/proxyproto/_fast.c "$out"/proxyproto/_fast.html
rm -rf "$out"/proxyproto/__pycache__
python3 -m cython -3 "$out/proxyproto/_fast.pyx" -o "$out/proxyproto/_fast.c"
include="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
clang -shared -fPIC -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
    -fsanitize="$sanitizers" -I"$include" \
    "$out/proxyproto/_fast.c" -o "$out/proxyproto/_fast$suffix"
echo "built $out/proxyproto/_fast$suffix with -fsanitize=$sanitizers"

# The sanitizer runtime, to LD_PRELOAD (Python itself is not instrumented). With coverage,
# it must also be libFuzzer's: ASan's runtime carries weak stand-ins for the coverage
# callbacks, and the extension's counters would go there instead of to the fuzzer. So
# link ASan and libFuzzer (without main) into one library, as atheris's own
# asan_with_fuzzer.so does; libFuzzer's strong callbacks win over ASan's weak ones.
rt="$(dirname "$(clang -print-file-name=libclang_rt.asan-x86_64.a)")"
if [ "${COVERAGE:-1}" = "1" ]; then
    work="$out/runtime"
    mkdir -p "$work"
    cp "$rt/libclang_rt.asan-x86_64.a" "$work/asan.a"
    ar d "$work/asan.a" asan_preinit.cpp.o  # .preinit_array is not allowed in a DSO
    clang++ -shared -o "$out/asan_with_fuzzer.so" -Wl,--whole-archive \
        "$rt/libclang_rt.fuzzer_no_main-x86_64.a" "$work/asan.a" \
        "$rt/libclang_rt.asan_cxx-x86_64.a" -Wl,--no-whole-archive -lpthread -ldl -lrt -lm
    rm -rf "$work"
    echo "runtime: $out/asan_with_fuzzer.so (ASan + libFuzzer)"
else
    ln -sf "$rt/libclang_rt.asan-x86_64.so" "$out/asan_with_fuzzer.so"
    echo "runtime: $out/asan_with_fuzzer.so -> the plain ASan runtime (no native coverage)"
fi
