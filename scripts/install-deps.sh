#!/usr/bin/env bash
# install-deps.sh: the Debian packages moat's build, tests and benchmarks use
# (a fresh machine has iproute2 but none of these). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  cmake g++ make python3          # the native addon (cmake-js, node-gyp)
  iproute2 iputils-ping iperf3    # namespaces, ping, TCP throughput
  uwsgi-core                      # interop tests and the uWSGI baseline
  nftables                        # the kernel firewall baseline in bench/
  clang libclang-rt-14-dev        # fuzzers and sanitizer builds
  busybox-static                  # small roots for pivot-root tests
  util-linux procps               # nsenter, unshare, ps
  tmux openssh-server openssh-client  # pty tests: a real terminal, an ssh login
  etcd-server etcd-client          # the fleet store (tests start etcd as a child process)
)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "install-deps: ${#packages[@]} packages present"
