#!/bin/sh
# Benchmark of banguard's firewall sync back-ends (nftables, ipset,
# iptables) with 100,000 banned addresses. See BENCHMARKS-sync.md.
#
# Every firewall command runs inside a throwaway network namespace: this
# machine's own firewall is never touched. Two passes:
#
#   1. "nsenter": the test creates a namespace (unshare) and runs each
#      command through `nsenter --target PID --net --mount --pid --`, as the
#      end-to-end tests do. Adds a few ms per command.
#   2. "direct": the whole benchmark runs under `unshare --net`, and the
#      back-ends spawn nft/ipset/iptables directly, as `banguardctl sync`
#      does in production. It refuses this mode unless its network
#      namespace differs from the one this script started in.
#
# Cases per back-end: N entries into an empty firewall; a no-change sync
# given `previous` (median of 5); a no-change sync that reads the state back
# from the kernel (no `previous`); 100 unbans + 100 new bans given
# `previous`.
#
# Usage (root; needs nft, ipset, iptables, ip6tables, unshare, nsenter):
#   bench/sync/run.sh [N] [backends]     e.g. bench/sync/run.sh 100000 nftables,ipset
set -eu
cd "$(dirname "$0")/../.."
N=${1:-100000}
BACKENDS=${2:-nftables,ipset,iptables}
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR

BIN=$(cargo bench -p banguard-e2e --bench sync --no-run 2>&1 |
    sed -n 's/.*Executable benches\/sync.rs (\(.*\))$/\1/p' | tail -n 1)
[ -x "$BIN" ] || { echo "run.sh: could not build the sync benchmark" >&2; exit 2; }

echo "# banguard sync benchmark: N=$N, $(nproc) CPUs, kernel $(uname -r)"
echo "# $(nft --version); $(ipset --version | head -n 1); $(iptables --version)"
echo
echo "## nsenter pass"
BANGUARD_BENCH_N=$N BANGUARD_BENCH_BACKENDS=$BACKENDS \
    "$BIN" sync_100k | grep '^[|<]'
echo
echo "## direct pass (unshare --net around the benchmark)"
HOST_NETNS=$(readlink /proc/self/ns/net)
for b in $(echo "$BACKENDS" | tr ',' ' '); do
    unshare --net -- env BANGUARD_BENCH_DIRECT=1 BANGUARD_BENCH_HOST_NETNS="$HOST_NETNS" BANGUARD_BENCH_N="$N" BANGUARD_BENCH_BACKENDS="$b" \
        "$BIN" sync_100k | grep '^[|<]'
done
