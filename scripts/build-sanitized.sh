#!/usr/bin/env bash
# build-sanitized.sh: an AddressSanitizer + UndefinedBehaviorSanitizer build of
# the addon into build-asan/Release/moat.node (cmake-js, same CMakeLists.txt,
# another out dir; build/ is left alone), and a way to run tests under it.
#
#   scripts/build-sanitized.sh                 build only
#   scripts/build-sanitized.sh test FILE...    build, then run these compiled
#                                              test files (dist/test/...js) under it
#   scripts/build-sanitized.sh env             print the environment to use by hand
#
# How it runs inside Node.js: the addon is built with gcc's -fsanitize=address,
# so libasan must be the first library of the process: LD_PRELOAD of gcc's
# libasan.so. MOAT_ADDON points src/native.ts at the sanitized addon.
# LeakSanitizer is off inside Node.js (detect_leaks=0): V8 and Node keep
# allocations alive until exit by design, and the report would be theirs;
# leaks are checked where they mean something, in the fuzz binaries
# (scripts/fuzz.sh) and native test programs. UBSan and ASan findings abort
# the test process (the test file then fails).
# Children of the test process inherit LD_PRELOAD (ip, ping, node helpers):
# harmless for them; the uWSGI interop tests are not meant to run under it.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build-asan
ADDON="$PWD/$OUT/Release/moat.node"
LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so)
SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"

sanitized_env() {
  echo "MOAT_ADDON=$ADDON"
  echo "LD_PRELOAD=$LIBASAN"
  echo "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0"
  echo "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
}

build() {
  if [ ! -e "$LIBASAN" ] || [ "$LIBASAN" = libasan.so ]; then
    echo "build-sanitized: no libasan.so for ${CXX:-g++}" >&2
    exit 1
  fi
  # cmake-js sets CMAKE_CXX_FLAGS itself (to -DBUILDING_NODE_EXTENSION), so
  # the sanitizer flags go into the Release configuration's flags.
  # `compile` would keep an earlier configuration: configure every time, then
  # build (ninja rebuilds only what changed).
  { npx cmake-js configure --out "$OUT" \
      --CDCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG $SAN_FLAGS" \
      --CDCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" &&
    npx cmake-js build --out "$OUT"; } >"$OUT.log" 2>&1 \
    || { tail -30 "$OUT.log" >&2; exit 1; }
  # Proof that the code is instrumented (not merely linked with libasan)...
  if [ "$(nm -D --undefined-only "$ADDON" | grep -c __asan_report_load)" -eq 0 ]; then
    echo "build-sanitized: $ADDON is not instrumented (no __asan_report_* calls)" >&2
    exit 1
  fi
  # ...and that what runs is the sanitized addon with the ASan runtime loaded.
  env $(sanitized_env) node -e '
    const a = require(process.env.MOAT_ADDON);
    const maps = require("fs").readFileSync("/proc/self/maps", "utf8");
    if (!/libasan/.test(maps) || !maps.includes(process.env.MOAT_ADDON)) { console.error("build-sanitized: ASan runtime or addon not mapped"); process.exit(1); }
    if (typeof a.Router !== "function") { console.error("build-sanitized: addon lacks Router"); process.exit(1); }
    console.log("build-sanitized: " + process.env.MOAT_ADDON + " loads under ASan/UBSan");'
}

case "${1:-build}" in
  build) build ;;
  env) sanitized_env ;;
  test)
    shift
    [ $# -gt 0 ] || { echo "usage: $0 test dist/test/...test.js ..." >&2; exit 2; }
    build
    env $(sanitized_env) node --test --test-concurrency=1 "$@"
    ;;
  *) echo "usage: $0 [build|env|test FILE...]" >&2; exit 2 ;;
esac
