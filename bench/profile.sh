#!/usr/bin/env bash
# bench/profile.sh: per-packet cost of moat's data path, each direction, on a
# fixed packet count: syscalls per packet (perf syscall tracepoints, low
# overhead; or strace -c), CPU time per packet (perf task-clock, user+kernel),
# and user-space instructions per packet (callgrind; perf has no hardware
# counters in this VM).
#
#   bench/profile.sh [--count N] [--rate PPS] [--mode perf|strace|callgrind|all]
#
# The router and the device run as bench/bin/pathd (the native core without
# Node.js: the same code the addon runs) in two namespaces made here
# (gateway 192.168.0.1, vassal 192.168.0.2), removed on exit. Traffic is the
# bench's 64-byte UDP flood (bench/gen/flood.c), unpaced unless --rate.
# Needs root, perf, strace, valgrind, c++.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/bench/bin"
COUNT=200000
RATE=""
MODE=perf
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --mode) MODE="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[ "$COUNT" -gt 0 ] && [ "$COUNT" -le 5000000 ] || { echo "--count must be 1..5000000" >&2; exit 1; }

mkdir -p "$BIN"
cc -O2 -Wall -o "$BIN/flood" "$ROOT/bench/gen/flood.c"
c++ -std=c++17 -O2 -g -Wall -o "$BIN/pathd" "$ROOT/bench/gen/pathd.cc" \
  "$ROOT"/native/{frame,tun,classifier,router,router_control,peer,limiter,addresses,peer_identity,listen_socket,device,offload,gso,coalesce,conntrack,reject,sched_slice}.cc -lpthread

ID="pf$$"
GW="${ID}g"; VN="${ID}v"; GT="${ID}t"; VT="${ID}u"
DIR="$(mktemp -d /tmp/moat-profile-XXXXXX)"
SOCK="$DIR/router.sock"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$GW" 2>/dev/null || true
  ip netns del "$VN" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

ip netns add "$GW"; ip netns add "$VN"
for ns in "$GW" "$VN"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
done

RPID=""; DPID=""
start_path() {  # $1: wrapper prefix ("" or valgrind ...)
  local wrap="$1"
  $wrap "$BIN/pathd" router "$GT" "$SOCK" --netns "/run/netns/$GW" >"$DIR/router.out" 2>"$DIR/router.err" &
  RPID=$!; PIDS+=("$RPID")
  for _ in $(seq 200); do [ -S "$SOCK" ] && ip -n "$GW" link show "$GT" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$GW" addr add 192.168.0.1/24 dev "$GT" 2>/dev/null || true
  ip -n "$GW" link set "$GT" up
  $wrap "$BIN/pathd" device "$VT" "$SOCK" --netns "/run/netns/$VN" >"$DIR/device.out" 2>"$DIR/device.err" &
  DPID=$!; PIDS+=("$DPID")
  for _ in $(seq 200); do ip -n "$VN" link show "$VT" >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$VN" addr add 192.168.0.2/24 dev "$VT" 2>/dev/null || true
  ip -n "$VN" link set "$VT" up
  ip -n "$VN" route replace default via 192.168.0.1 dev "$VT"
  for _ in $(seq 60); do ip netns exec "$VN" ping -n -c1 -W1 192.168.0.1 >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "no ping through the path" >&2; cat "$DIR"/*.err >&2; exit 1
}
stop_path() {
  kill -INT "$RPID" "$DPID" 2>/dev/null || true
  wait "$RPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true
  rm -f "$SOCK"
}

# One flood of COUNT packets in direction $1 (v2g|g2v); echoes "sent received".
flood() {
  local from to dst
  if [ "$1" = v2g ]; then from=$VN; to=$GW; dst=192.168.0.1; else from=$GW; to=$VN; dst=192.168.0.2; fi
  local tag=$((RANDOM * 1000 + 7))
  ip netns exec "$to" "$BIN/flood" recv --bind "$dst" --port 9000 --duration 60 --idle 1 --tag "$tag" >"$DIR/recv.json" 2>"$DIR/recv.err" &
  local rp=$!
  for _ in $(seq 100); do grep -q ready "$DIR/recv.err" 2>/dev/null && break; sleep 0.05; done
  local extra=()
  [ -n "$RATE" ] && extra=(--rate "$RATE")
  ip netns exec "$from" "$BIN/flood" send --dst "$dst" --port 9000 --size 64 --count "$COUNT" --duration 30 --tag "$tag" "${extra[@]}" >"$DIR/send.json"
  wait "$rp" || true
  local sent recv
  sent=$(grep -o '"sent":[0-9]*' "$DIR/send.json" | cut -d: -f2)
  recv=$(grep -o '"received":[0-9]*' "$DIR/recv.json" | cut -d: -f2)
  echo "$sent ${recv:-0}"
}

# utime stime (clock ticks) of a process, all threads.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

per() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

EVENTS="raw_syscalls:sys_enter,task-clock"
for s in read write readv writev sendto recvfrom sendmsg recvmsg epoll_wait epoll_ctl; do EVENTS="$EVENTS,syscalls:sys_enter_$s"; done

run_perf() {
  start_path ""
  for dir in v2g g2v; do
    local ru0 du0
    ru0=$(cpu_ticks "$RPID"); du0=$(cpu_ticks "$DPID")
    perf stat -x, -e "$EVENTS" -p "$RPID" -o "$DIR/perf-router" &
    local pr=$!
    perf stat -x, -e "$EVENTS" -p "$DPID" -o "$DIR/perf-device" &
    local pd=$!
    sleep 0.5
    read -r sent recv < <(flood "$dir")
    kill -INT "$pr" "$pd"; wait "$pr" "$pd" 2>/dev/null || true
    local ru1 du1
    ru1=$(cpu_ticks "$RPID"); du1=$(cpu_ticks "$DPID")
    echo "== perf $dir: sent $sent received $recv (64-byte UDP${RATE:+, paced $RATE/s})"
    for who in router device; do
      local line=""
      while IFS=, read -r val _unit ev _rest; do
        case "$ev" in
          raw_syscalls:sys_enter) line="$line syscalls/pkt=$(per "$val" "$recv")" ;;
          task-clock) line="$line cpu_us/pkt=$(awk -v a="$val" -v b="$recv" 'BEGIN{printf "%.3f", a*1000/b}')" ;;
          syscalls:sys_enter_*) [ "$val" != 0 ] && [ "$val" != "<not" ] && line="$line ${ev#syscalls:sys_enter_}=$(per "$val" "$recv")" ;;
        esac
      done < <(grep -v '^#' "$DIR/perf-$who" | grep ,)
      local t0=$ru0 t1=$ru1
      [ "$who" = device ] && { t0=$du0; t1=$du1; }
      line="$line $(awk -v a="$t0" -v b="$t1" -v n="$recv" -v hz="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "user_us/pkt=%.3f sys_us/pkt=%.3f", (y[1]-x[1])*1e6/hz/n, (y[2]-x[2])*1e6/hz/n }')"
      printf '  %-6s%s\n' "$who" "$line"
    done
  done
  stop_path
  echo "  counters since start: $(cat "$DIR/router.out") $(cat "$DIR/device.out")"
}

run_strace() {
  start_path ""
  for dir in v2g g2v; do
    strace -c -f -p "$RPID" -o "$DIR/strace-router" &
    local sr=$!
    strace -c -f -p "$DPID" -o "$DIR/strace-device" &
    local sd=$!
    sleep 1
    read -r sent recv < <(flood "$dir")
    kill -INT "$sr" "$sd"; wait "$sr" "$sd" 2>/dev/null || true
    echo "== strace $dir: sent $sent received $recv (strace slows every syscall: batches grow)"
    for who in router device; do
      echo "  $who (calls per received packet):"
      # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall
      awk -v n="$recv" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { c = $4; t += c; printf "    %-14s %8.3f\n", $NF, c / n } END { printf "    %-14s %8.3f\n", "total", t / n }' "$DIR/strace-$who"
    done
  done
  stop_path
}

run_callgrind() {
  for dir in v2g g2v; do
    start_path "valgrind -q --tool=callgrind --instr-atstart=no --callgrind-out-file=$DIR/cg.%p"
    callgrind_control -i on "$RPID" >/dev/null; callgrind_control -i on "$DPID" >/dev/null
    read -r sent recv < <(flood "$dir")
    callgrind_control -i off "$RPID" >/dev/null; callgrind_control -i off "$DPID" >/dev/null
    stop_path
    echo "== callgrind $dir: sent $sent received $recv (user-space instructions only${RATE:+, paced $RATE/s})"
    for who in router device; do
      local pid=$RPID; [ "$who" = device ] && pid=$DPID
      local ir
      ir=$(cat "$DIR/cg.$pid"* | awk '/^(summary|totals):/ { t += $2 } END { print t + 0 }')
      echo "  $who instructions/pkt=$(per "$ir" "$recv")"
      callgrind_annotate --inclusive=no "$DIR/cg.$pid"* 2>/dev/null | grep -E "^ *[0-9,]+ \(" | head -8 | sed "s/^/      /" || true
    done
  done
}

# Where the time goes: kernel + user call graphs of router and device
# (software clock sampling; works without hardware counters).
run_record() {
  start_path ""
  for dir in v2g g2v; do
    perf record -q -e cpu-clock -F 2000 -g -p "$RPID" -o "$DIR/rec-router" 2>/dev/null &
    local pr=$!
    perf record -q -e cpu-clock -F 2000 -g -p "$DPID" -o "$DIR/rec-device" 2>/dev/null &
    local pd=$!
    sleep 0.5
    read -r sent recv < <(flood "$dir")
    kill -INT "$pr" "$pd"; wait "$pr" "$pd" 2>/dev/null || true
    echo "== record $dir: sent $sent received $recv"
    for who in router device; do
      echo "  $who, self time by symbol:"
      perf report -i "$DIR/rec-$who" --no-children --sort sym --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -14 | sed 's/^/    /'
    done
  done
  stop_path
}

case "$MODE" in
  record) run_record ;;
  perf) run_perf ;;
  strace) run_strace ;;
  callgrind) run_callgrind ;;
  all) run_perf; run_strace; run_callgrind ;;
  *) echo "unknown mode $MODE" >&2; exit 1 ;;
esac
