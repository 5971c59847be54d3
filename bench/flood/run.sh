#!/bin/bash
# Flood benchmark: is banguard exact when many attempts arrive at once?
# Results: BENCHMARKS.md §4.
#
# HOSTS source addresses x 4 parallel `pamtester ... authenticate` each
# (HOSTS*4 processes released together from a barrier), against the stack
#
#   auth requisite pam_banguard.so config=...      (maxretry 3)
#   auth optional  pam_exec.so quiet <counter>     (ground truth: a password
#   auth requisite pam_deny.so                      that reached this point
#                                                   was evaluated)
#
# inside a throwaway mount namespace whose /etc/pam.d is a bind-mounted
# temp dir (this machine's PAM configuration is never read or touched).
# Every run uses fresh source addresses and a store that already exists.
#
# Reported per row (median over RUNS runs; max for the counts):
#   over      hosts that had more than maxretry passwords evaluated (target 0)
#   uncounted passwords evaluated that the store never counted (target 0)
#   overload  attempts refused unchecked because their turn did not come
#             within busy_timeout_ms (the module's overload answer)
#   time p50/p99/max  barrier to answer of each pamtester process, ms
#   wall      barrier to the last answer, s
#
# Rows: 200, 500, 1000 concurrent attempts, with the runtime state on tmpfs
# (/dev/shm) and on the disk (TMPDIR, ext4 here), with and without two busy
# CPU hogs; then "after reboot": a store with REBOOT_BANS active bans whose
# runtime state was removed, 50 and 200 concurrent first attempts.
#
# Usage (root; needs pamtester, unshare, python3):
#   bench/flood/run.sh [MODULE] [RUNS] [REBOOT_BANS]
#       MODULE       default target/release/libpam_banguard.so
#       RUNS         default 3
#       REBOOT_BANS  default 100000
# Set ROWS="200 500" (concurrent attempts) or SKIP_REBOOT=1 to run less;
# BUSY_MS=100 sets [store] busy_timeout_ms (default: the module's own), to
# see what each build does when the wait runs out; PLACES="tmpfs" and
# LOADS="idle" narrow the rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODULE=$(realpath "${1:-target/release/libpam_banguard.so}")
RUNS=${2:-3}
REBOOT_BANS=${3:-100000}
ROWS=${ROWS:-"200 500 1000"}
PLACES=${PLACES:-"tmpfs disk"}
LOADS=${LOADS:-"idle hogs"}
BUSY_MS=${BUSY_MS:-}
MAXRETRY=3
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (namespaces, pamtester as root)" >&2; exit 2; }
for tool in pamtester unshare python3; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (make deps)" >&2; exit 2; }
done
[ -f "$MODULE" ] || { echo "run.sh: no module at $MODULE (cargo build --release)" >&2; exit 2; }
PAM_EXEC=$(find /lib /usr/lib /lib64 /usr/lib64 -name pam_exec.so 2>/dev/null | head -n 1)

WORK=$(mktemp -d)
SHM=$(mktemp -d /dev/shm/banguard-flood.XXXXXX)
HOGS=()
cleanup() {
    for pid in "${HOGS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK" "$SHM"
}
trap cleanup EXIT
chmod 700 "$WORK" "$SHM"

echo "# banguard flood benchmark: $(nproc) CPUs, $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r)"
echo "# module: $MODULE ($(sha256sum "$MODULE" | cut -c1-12)); maxretry $MAXRETRY; $RUNS runs per row; busy_timeout_ms ${BUSY_MS:-default}"
echo "# disk: $(findmnt -n -o FSTYPE,SOURCE -T "$WORK"); tmpfs: $(findmnt -n -o FSTYPE -T "$SHM")"
echo

# setup DIR RUNTIME_DIR: config + PAM service in DIR, runtime state in RUNTIME_DIR.
setup() {
    local dir=$1 rtdir=$2
    mkdir -p "$dir/pam.d" "$dir/db" "$rtdir"
    chmod 700 "$dir/db" "$rtdir"
    cat >"$dir/banguard.toml" <<EOF
[default]
maxretry = $MAXRETRY
findtime = "1h"
bantime = "1h"
database = "$dir/db/banguard.db"
[store]
runtime = "$rtdir/runtime.db"
${BUSY_MS:+busy_timeout_ms = $BUSY_MS}
[sync]
trigger_file = "$rtdir/ban.trigger"
EOF
    chmod 600 "$dir/banguard.toml"
    # The counter pam_exec runs: one line per evaluated password. pam_exec
    # passes only PAM's own variables, so the file's path is written in.
    printf '#!/bin/sh\necho "$PAM_RHOST" >>%s/count\n' "$dir" >"$dir/count.sh"
    chmod 755 "$dir/count.sh"
    cat >"$dir/pam.d/flood" <<EOF
auth requisite $MODULE config=$dir/banguard.toml
auth optional $PAM_EXEC quiet $dir/count.sh
auth requisite pam_deny.so
account required pam_permit.so
EOF
}

# flood DIR N NET: N/4 hosts (NET.h.x) x 4 pamtester at once. Prints one
# line: over uncounted overload p50 p99 max wall
flood() {
    local dir=$1 n=$2 net=$3
    local hosts=$((n / 4))
    rm -f "$dir/go" "$dir/count" "$dir/times"
    mkfifo "$dir/go"
    : >"$dir/count"
    unshare -m --propagation private bash -c '
        set -u
        dir=$1 hosts=$2 net=$3
        mount --bind "$dir/pam.d" /etc/pam.d
        for ((h = 0; h < hosts; h++)); do
            ip="$net.$((h / 250)).$((h % 250 + 1))"
            for k in 1 2 3 4; do
                (
                    read -r _ <"$dir/go" || true
                    s=$EPOCHREALTIME
                    out=$(pamtester -I rhost="$ip" flood root authenticate </dev/null 2>&1)
                    e=$EPOCHREALTIME
                    echo "$ip $s $e ${out##*: }" >>"$dir/times"
                ) &
            done
        done
        sleep 1
        exec 3>"$dir/go"
        exec 3>&-
        wait
    ' flood "$dir" "$hosts" "$net"
    python3 - "$dir" "$MAXRETRY" "$net" <<'EOF'
import collections, sqlite3, statistics, sys
d, maxretry, net = sys.argv[1], int(sys.argv[2]), sys.argv[3]
evaluated = collections.Counter(l.strip() for l in open(f"{d}/count") if l.strip())
answers = sum(1 for l in open(f"{d}/times") if l.strip())
if not evaluated and answers:
    sys.exit(f"run.sh: {answers} answers but no password reached the counter: the ground truth is broken")
rows = [l.split(None, 3) for l in open(f"{d}/times") if l.strip()]
times = sorted((float(e) - float(s)) * 1000 for _, s, e, _ in rows)
start = min(float(s) for _, s, _, _ in rows)
wall = max(float(e) for _, _, e, _ in rows) - start
overload = sum(1 for *_, msg in rows if "cannot retrieve authentication info" in msg)
# What the store counted for these hosts: rows still in the window plus
# the failures each new ban consumed.
counted = collections.Counter()
rt = sys.argv[1] + "/rtpath"
path = open(rt).read().strip()
con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
for host, n in con.execute("SELECT host, count(*) FROM attempts WHERE state IN (0,1) AND host LIKE ? GROUP BY host", (net + ".%",)):
    counted[host.split("/")[0]] += n
for host, n in con.execute("SELECT host, failures FROM bans WHERE host LIKE ?", (net + ".%",)):
    counted[host.split("/")[0]] += n
over = sum(1 for h, n in evaluated.items() if n > maxretry)
uncounted = sum(max(n - counted[h], 0) for h, n in evaluated.items())
q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
print(over, uncounted, overload, f"{q(0.5):.0f}", f"{q(0.99):.0f}", f"{times[-1]:.0f}", f"{wall:.2f}")
EOF
}

hogs_on() {
    for _ in 1 2; do (while :; do :; done) & HOGS+=($!); done
}
hogs_off() {
    for pid in "${HOGS[@]}"; do kill "$pid" 2>/dev/null || true; done
    HOGS=()
}

# row LABEL DIR N: RUNS floods with fresh addresses; prints a table row.
net_seq=10
row() {
    local label=$1 dir=$2 n=$3 results=()
    for ((r = 0; r < RUNS; r++)); do
        net_seq=$((net_seq + 1))
        results+=("$(flood "$dir" "$n" "10.$net_seq")")
    done
    printf '%s\n' "${results[@]}" | summarize "$label"
}

# summarize LABEL: one table row from one line per run on stdin (over,
# uncounted, overload, p50, p99, max, wall[, cpu]): the counts are the worst
# run, the rest the median run.
summarize() {
    python3 -c '
import statistics, sys
runs = [list(map(float, l.split())) for l in sys.stdin if l.strip()]
col = lambda i: [r[i] for r in runs]
cells = [f"{max(col(i)):.0f}" for i in range(3)] + [f"{statistics.median(col(i)):.0f}" for i in range(3, 6)]
cells += [f"{statistics.median(col(6)):.2f}"] + [f"{statistics.median(col(i)):.1f}" for i in range(7, len(runs[0]))]
print("| " + " | ".join([sys.argv[1]] + cells) + " |")
' "$1"
}

echo "| concurrent attempts, runtime state, load | hosts over maxretry (max) | evaluated uncounted (max) | refused for overload (max) | time p50 ms | p99 ms | max ms | wall s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for place in $PLACES; do
    if [ "$place" = tmpfs ]; then rtdir="$SHM/rt-$place"; else rtdir="$WORK/rt-$place"; fi
    dir="$WORK/$place"
    setup "$dir" "$rtdir"
    echo "$rtdir/runtime.db" >"$dir/rtpath"
    # The store exists before the first row (one attempt creates it).
    unshare -m --propagation private bash -c \
        'mount --bind "$1/pam.d" /etc/pam.d; pamtester -I rhost=10.255.0.1 flood root authenticate </dev/null >/dev/null 2>&1' _ "$dir" || true
    for load in $LOADS; do
        [ "$load" = hogs ] && hogs_on
        for n in $ROWS; do
            row "$n, $place, $load" "$dir" "$n"
        done
        [ "$load" = hogs ] && hogs_off
    done
done

# After a reboot: REBOOT_BANS active bans in the store, no runtime state.
if [ "${SKIP_REBOOT:-0}" != 1 ]; then
    dir="$WORK/reboot"
    rtdir="$SHM/rt-reboot"
    setup "$dir" "$rtdir"
    echo "$rtdir/runtime.db" >"$dir/rtpath"
    unshare -m --propagation private bash -c \
        'mount --bind "$1/pam.d" /etc/pam.d; pamtester -I rhost=10.255.0.1 flood root authenticate </dev/null >/dev/null 2>&1' _ "$dir" || true
    python3 - "$dir/db/banguard.db" "$REBOOT_BANS" <<'EOF'
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1])
now = int(time.time())
con.executemany(
    "INSERT INTO bans (host, family, prefix, service, created, expires, reason, failures, prior_bans)"
    " VALUES (?, 4, 32, 'flood', ?, ?, 'maxretry', 3, 0)",
    ((f"172.{16 + i // 65536}.{i // 256 % 256}.{i % 256}/32", now, now + 86400) for i in range(int(sys.argv[2]))))
con.execute("INSERT OR IGNORE INTO ban_prefixes VALUES (4, 32)")
con.execute("UPDATE generation SET value = value + 1")
con.commit()
EOF
    echo
    echo "| after reboot: $REBOOT_BANS bans, runtime state removed | hosts over maxretry (max) | evaluated uncounted (max) | refused for overload (max) | time p50 ms | p99 ms | max ms | wall s | CPU s (all processes) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    TIMEFORMAT='%U %S'
    for n in 50 200; do
        results=()
        for ((r = 0; r < RUNS; r++)); do
            rm -f "$rtdir/runtime.db" "$rtdir/runtime.db-journal"
            net_seq=$((net_seq + 1))
            { time flood "$dir" "$n" "10.$net_seq" >"$dir/line"; } 2>"$dir/cpu"
            results+=("$(cat "$dir/line") $(awk '{print $1 + $2}' "$dir/cpu")")
        done
        printf '%s\n' "${results[@]}" | summarize "$n concurrent first attempts"
    done
fi
