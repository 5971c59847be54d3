#!/bin/sh
# Benchmark of banguard's authentication path. Results: BENCHMARKS.md §2.
#
#   1. Cost: the wall time pam_banguard.so adds to one authentication.
#      pamtester runs inside a throwaway namespace (unshare: network, mount
#      and PID) whose /etc/pam.d is a bind-mounted temp dir, so this
#      machine's PAM configuration is never read or touched. Each stack runs
#      with and without the one module line (`auth requisite
#      pam_banguard.so config=...` before pam_permit / pam_deny), ABBA-
#      interleaved, RUNS times each after 5 warm-up runs; median and p99
#      of each pamtester run's wall time, and their differences. Stores:
#      empty, pre-filled (PREFILL failing hosts + PREFILL/10 active bans),
#      both with the runtime state on tmpfs (/dev/shm), and empty with the
#      runtime state on the disk. The same stacks are then timed in process
#      (pam_start_confdir .. pam_end), without process start-up, and one
#      handle is asked for RUNS passwords in a row (sshd's password method).
#      For reference, a success stack with pam_faillock instead of banguard;
#      and the store operation alone, without PAM, as fresh processes of
#      bg-coldstart (config read; the smallest SQLite attempt transaction;
#      banguard's open + attempt) against the same program doing nothing.
#   2. Overshoot: passwords evaluated beyond maxretry (3) when 1, 8 and 32
#      connections from one address offer 4 wrong passwords each, at once,
#      to a real OpenSSH sshd in its own namespace, with the password and
#      the keyboard-interactive method (REPS runs per row, a fresh source
#      address per run). Ground truth: a pam_exec line right after the
#      module counts the passwords that reached pam_unix.
#
# Both parts are benchmarks of the bench binary tests/benches/auth.rs; the
# namespaces die with the test (and with it every process started in them).
#
# Usage (root; needs pamtester, sshd, ssh, unshare, nsenter, bash):
#   bench/auth/run.sh [RUNS] [PREFILL] [REPS]     defaults: 300 100000 5
set -eu
cd "$(dirname "$0")/../.."
RUNS=${1:-300}
PREFILL=${2:-100000}
REPS=${3:-5}
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR

[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (namespaces, sshd, the store's root-only writes)" >&2; exit 2; }

echo "# banguard auth benchmark: $(nproc) CPUs, $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r)"
echo "# $(sshd -V 2>&1 | head -n 1); pamtester $(dpkg-query -W -f '${Version}' pamtester 2>/dev/null || echo '?'); libpam $(dpkg-query -W -f '${Version}' libpam0g 2>/dev/null || echo '?')"
echo "# store on: $(findmnt -n -o FSTYPE,SOURCE -T "${TMPDIR:-/tmp}")"
echo
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! BANGUARD_BENCH_RUNS=$RUNS BANGUARD_BENCH_PREFILL=$PREFILL BANGUARD_BENCH_REPS=$REPS \
    cargo bench -p banguard-e2e --bench auth >"$out" 2>&1; then
    cat "$out" >&2
    echo "run.sh: the benchmark failed (output above)" >&2
    exit 1
fi
grep -E '^(#|\|)|^$' "$out" | cat -s
