#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer harnesses in native/fuzz/ with
# AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer, replays the
# saved regression inputs, then fuzzes each harness for a bounded time.
#
#   scripts/fuzz.sh [HARNESS...]        all harnesses when none is named
#   scripts/fuzz.sh --merge [HARNESS...] fold the working corpus into the seeds
#
# Environment:
#   FUZZ_SECONDS  time per harness (default 60)
#   FUZZ_OUT      build and working-corpus directory (default build-fuzz)
#   CXX           a clang++ with libFuzzer (default clang++)
#
# Seeds:       test/fuzz/corpus/<harness>/      (read, never written by a run)
# Working:     $FUZZ_OUT/corpus/<harness>/      (new inputs; kept between runs)
# Regressions: test/fuzz/regressions/<harness>/ (every input replayed each run;
#              a crash, leak, timeout or out-of-memory input found by this run is
#              saved here: commit it with the fix)
# Exit status: 0 when nothing failed, 1 otherwise. Prints executions per second
# and corpus sizes per harness.
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-build-fuzz}
CXX=${CXX:-clang++}
MERGE=0
if [ "${1:-}" = "--merge" ]; then MERGE=1; shift; fi

# harness -> the core sources it links, and its -max_len
declare -A SOURCES=(
  [fuzz_frame]="native/frame.cc native/offload.cc native/gso.cc"
  [fuzz_classifier]="native/classifier.cc"
  [fuzz_gso]="native/gso.cc"
  [fuzz_conntrack]="native/conntrack.cc native/reject.cc native/frame.cc native/offload.cc native/gso.cc"
)
declare -A MAXLEN=(
  [fuzz_frame]=70000
  [fuzz_classifier]=4096
  [fuzz_gso]=65545
  [fuzz_conntrack]=8192
)
HARNESSES=("$@")
[ ${#HARNESSES[@]} -eq 0 ] && HARNESSES=(fuzz_frame fuzz_classifier fuzz_gso fuzz_conntrack)

# UBSan findings abort (and so are saved); leaks are reported by LSan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
CFLAGS=(-std=c++17 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Inative)

mkdir -p "$OUT"
failed=()
summary=()

for h in "${HARNESSES[@]}"; do
  if [ -z "${SOURCES[$h]:-}" ]; then echo "fuzz: unknown harness $h" >&2; exit 2; fi
  bin="$OUT/$h"
  seeds="test/fuzz/corpus/$h"
  regress="test/fuzz/regressions/$h"
  work="$OUT/corpus/$h"
  mkdir -p "$work" "$regress"
  # shellcheck disable=SC2086
  if ! "$CXX" "${CFLAGS[@]}" "native/fuzz/$h.cc" ${SOURCES[$h]} -o "$bin"; then
    echo "fuzz: $h does not build" >&2
    failed+=("$h:build")
    continue
  fi

  if [ $MERGE -eq 1 ]; then
    "$bin" -merge=1 -max_len="${MAXLEN[$h]}" "$seeds" "$work" >"$OUT/$h.merge.log" 2>&1 || failed+=("$h:merge")
    echo "fuzz: $h seeds now $(find "$seeds" -type f | wc -l) files"
    continue
  fi

  # 1. Every saved regression input and every seed, once.
  mapfile -t replay < <(find "$regress" "$seeds" -type f ! -name '.*' | sort)
  if [ ${#replay[@]} -gt 0 ]; then
    if ! "$bin" -runs=1 "${replay[@]}" >"$OUT/$h.replay.log" 2>&1; then
      echo "fuzz: $h fails on a saved input (see $OUT/$h.replay.log):" >&2
      grep -E 'ERROR|SUMMARY|check failed|Running:' "$OUT/$h.replay.log" | tail -5 >&2
      failed+=("$h:replay")
    fi
  fi

  # 2. Fuzz for a bounded time; new inputs go to the working corpus only.
  log="$OUT/$h.log"
  "$bin" -max_total_time="$SECONDS_EACH" -max_len="${MAXLEN[$h]}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$regress/" "$work" "$seeds" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | sed 's/corp: //')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | sed 's/cov: //')
  rate=$(( ${execs:-0} / ( ${secs:-0} > 0 ? ${secs:-1} : 1 ) ))
  line="$h: ${execs:-?} execs in ${secs:-?} s = ${rate} exec/s, cov ${cov:-?}, corpus ${corp:-?} (seeds $(find "$seeds" -type f | wc -l), working $(find "$work" -type f | wc -l) files)"
  if [ $rc -ne 0 ]; then
    echo "fuzz: $h FAILED (exit $rc); input saved under $regress/, log $log:" >&2
    grep -E 'ERROR|SUMMARY|check failed|fuzz_[a-z]+:' "$log" | head -20 >&2
    ls -t "$regress" | head -3 >&2
    failed+=("$h:fuzz")
    line="$line FAILED"
  fi
  summary+=("$line")
done

for l in "${summary[@]}"; do echo "fuzz: $l"; done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ok"
