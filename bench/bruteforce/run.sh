#!/bin/sh
# Side-by-side brute-force benchmark: banguard, fail2ban and pam_abl on the
# same real OpenSSH sshd, in throwaway namespaces (network, mount, PID)
# that die with the test. See BENCHMARKS-bruteforce.md.
#
# Needs (root): sshd, ssh, fail2ban (+ python3-pyinotify), iptables:
# `make bench-deps` installs them without starting fail2ban's own service.
# pam_abl.so is taken out of `apt-get download libpam-abl` into
# $CARGO_TARGET_DIR/bench-abl, never installed: the package's postinst
# would add pam_abl to this machine's common-auth. fail2ban runs only inside the namespace, with its own
# config, socket and database; its iptables rules change only the
# namespace's firewall.
#
# Usage: bench/bruteforce/run.sh [RUNS] [FLOOD_LINES] [SUSTAIN_SECONDS]
#   defaults: 3 200000 60
#   BANGUARD_BENCH_DEFENDERS=banguard,fail2ban,pam_abl   (a subset, side by side)
# The sustained attack (banguard default and PAM-only, fail2ban, no
# defender, SUSTAIN_SECONDS each run) takes about 4 x RUNS x (SUSTAIN + 40) s.
set -eu
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
LINES=${2:-200000}
SUSTAIN=${3:-60}
: "${CARGO_TARGET_DIR:=target}"
export CARGO_TARGET_DIR

[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (namespaces, sshd, fail2ban)" >&2; exit 2; }

abl_dir="$CARGO_TARGET_DIR/bench-abl"
if [ ! -f "$abl_dir/pam_abl.so" ]; then
    dl=$(mktemp -d)
    (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root libpam-abl >/dev/null) || { echo "run.sh: apt-get download libpam-abl failed (apt-get update?)" >&2; exit 2; }
    dpkg-deb -x "$dl"/libpam-abl_*.deb "$dl/root"
    mkdir -p "$abl_dir"
    cp "$(find "$dl/root" -name pam_abl.so | head -n 1)" "$abl_dir/pam_abl.so"
    cp "$dl"/libpam-abl_*.deb "$abl_dir/"
    rm -rf "$dl"
fi
BANGUARD_BENCH_PAM_ABL="$(cd "$abl_dir" && pwd)/pam_abl.so"
export BANGUARD_BENCH_PAM_ABL

echo "# banguard vs fail2ban vs pam_abl: $(nproc) CPUs, $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release), kernel $(uname -r)"
echo "# $(sshd -V 2>&1 | head -n 1); fail2ban $(dpkg-query -W -f '${Version}' fail2ban 2>/dev/null || echo '?'); $(basename "$(ls "$abl_dir"/libpam-abl_*.deb 2>/dev/null | head -n 1)" .deb)"
echo
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! BANGUARD_BENCH_RUNS=$RUNS BANGUARD_BENCH_LINES=$LINES BANGUARD_BENCH_SUSTAIN=$SUSTAIN \
    cargo bench -p banguard-e2e --bench bruteforce >"$out" 2>&1; then
    cat "$out" >&2
    echo "run.sh: the benchmark failed (output above)" >&2
    exit 1
fi
grep -E '^(#|\|)|^$' "$out" | cat -s
