#!/bin/sh
# Why nftables.rs keeps single addresses in plain timeout sets and only
# networks in interval sets: with nft 1.0.6 every change to a large
# interval set costs about as much as loading it, because nft first reads
# all its elements back. Also times the listings the back-end relies on.
#
# Runs itself under `unshare --net`: this machine's firewall is untouched.
# Usage (root): bench/sync/interval-vs-hash.sh [N]
set -eu
if [ "${BANGUARD_IN_NETNS:-}" != 1 ]; then
    BANGUARD_IN_NETNS=1 exec unshare --net -- "$0" "$@"
fi
N=${1:-100000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ms() { # ms LABEL CMD...: run CMD, print its wall time
    label=$1; shift
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    printf '| %s | %d ms |\n' "$label" $(( (e - s) / 1000000 ))
}

# N addresses 10.x.y.z, 4 apart, each with a one-hour timeout.
awk -v n="$N" 'BEGIN {
    printf "add element inet bench s {\n";
    for (i = 0; i < n; i++) {
        a = 167772160 + i * 4;
        printf "\t%d.%d.%d.%d timeout 3600s%s\n", int(a / 16777216), int(a / 65536) % 256, int(a / 256) % 256, a % 256, (i + 1 < n ? "," : "");
    }
    print "}";
}' > "$TMP/elements.nft"

echo "| nft $N elements ($(nft --version)) | time |"
echo "|---|---:|"
for flags in "interval,timeout" "timeout"; do
    nft delete table inet bench 2>/dev/null || true
    printf 'table inet bench {\n\tset s {\n\t\ttype ipv4_addr\n\t\tflags %s\n\t}\n}\n' "$flags" | nft -f -
    ms "flags $flags: load $N" nft -f "$TMP/elements.nft"
    ms "flags $flags: add 1" nft add element inet bench s '{ 192.0.2.1 timeout 60s }'
    ms "flags $flags: delete 1" nft delete element inet bench s '{ 192.0.2.1 }'
    ms "flags $flags: -j -t list sets (probe)" nft -j -t list sets inet
    ms "flags $flags: -j list table (read back)" nft -j list table inet bench
done
