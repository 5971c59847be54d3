#!/usr/bin/env bash
# banguard demo: a real OpenSSH sshd with the ONE banguard PAM line, in a
# throwaway network + mount + PID namespace. A brute force from 192.0.2.7 is
# refused after maxretry, another address still logs in, `banguardctl list`
# shows the ban, `banguardctl sync` makes the kernel (nftables) drop the
# attacker, `banguardctl unban` lets it back in.
#
# Nothing outside the namespace and a temp dir is touched: the host's
# /etc/pam.d, users, firewall and network stay as they are. Run as root:
#   make demo        (or: bash tests/demo.sh)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" != "--inside" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "demo: run as root (it starts sshd inside its own namespace): sudo make demo" >&2
        exit 2
    fi
    for p in sshd ssh sshpass nft unshare openssl; do
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$p" >/dev/null; then
            echo "demo: missing $p: run 'make deps' first (Debian/Ubuntu packages)" >&2
            exit 2
        fi
    done
    echo "== building banguard (release)"
    (cd "$here" && cargo build --release -q -p pam_banguard -p banguardctl)
    tmp=$(mktemp -d /tmp/banguard-demo.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    # --kill-child: if this script dies, everything in the namespace dies.
    unshare --net --mount --pid --fork --kill-child --propagation private --mount-proc \
        bash "$0" --inside "$tmp" "$here"
    exit $?
fi

# ---------------------------------------------------------------- inside
tmp=$2
here=$3
target="${CARGO_TARGET_DIR:-$here/target}/release"
module="$target/libpam_banguard.so"
ctl="$target/banguardctl"
export PATH="$PATH:/usr/sbin:/sbin"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '   \033[32m%s\033[0m\n' "$*"; }
bad() { printf '   \033[31m%s\033[0m\n' "$*"; }

ip link set lo up
# The attacker and a bystander: documentation addresses on lo, used only as
# sources (every connection goes to 127.0.0.1). Loopback sources would be
# refused by PAM but never blocked in the kernel.
ip addr add 192.0.2.7/32 dev lo
ip addr add 198.51.100.20/32 dev lo
# Private /run (sshd's privsep dir, banguard's trigger) and /var/log.
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mkdir -p /run/sshd && chmod 755 /run/sshd

# A throwaway user "demo" with password "correct-horse", in this namespace only.
for f in passwd shadow group; do cp "/etc/$f" "$tmp/$f"; done
hash=$(openssl passwd -6 correct-horse)
echo "demo:x:4243:4243:banguard demo:/tmp:/bin/sh" >>"$tmp/passwd"
echo "demo:$hash:19000:0:99999:7:::" >>"$tmp/shadow"
echo "demo:x:4243:" >>"$tmp/group"
for f in passwd shadow group; do mount --bind "$tmp/$f" "/etc/$f"; done

# banguard's config: 3 tries in 10 minutes, then a 1 minute ban; the kernel
# sync pushes every ban (scope "all") into an nftables set.
cat >"$tmp/banguard.toml" <<EOF
[default]
maxretry = 3
findtime = "10m"
bantime = "1m"
ignoreip = []
database = "$tmp/db/banguard.db"

[sync]
backends = ["nftables"]
scope = "all"
trigger_file = "/run/banguard/ban.trigger"
lock_file = "$tmp/sync.lock"
EOF
chmod 600 "$tmp/banguard.toml"

# /etc/pam.d/sshd with the ONE banguard line before the password modules,
# plus a line that logs every password that got past banguard (the ground
# truth of what was actually checked).
cp -a /etc/pam.d "$tmp/pam.d"
cat >"$tmp/evaluated.sh" <<'EOF'
#!/bin/sh
echo "$PAM_RHOST" >> "$(dirname "$0")/evaluated.log"
EOF
chmod 755 "$tmp/evaluated.sh"
sed -i "s|^@include common-auth|auth requisite $module config=$tmp/banguard.toml\nauth optional pam_exec.so quiet $tmp/evaluated.sh\n@include common-auth|" "$tmp/pam.d/sshd"
# pam_unix's 2 s delay after a wrong password only slows the demo down.
sed -i 's/\(pam_unix.so.*\)$/\1 nodelay/' "$tmp/pam.d/common-auth"
mount --bind "$tmp/pam.d" /etc/pam.d

ssh-keygen -q -t ed25519 -N '' -f "$tmp/host_key"
cat >"$tmp/sshd_config" <<EOF
Port 2222
ListenAddress 127.0.0.1
HostKey $tmp/host_key
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
MaxAuthTries 10
UseDNS no
PidFile $tmp/sshd.pid
EOF
/usr/sbin/sshd -D -e -f "$tmp/sshd_config" 2>"$tmp/sshd.log" &
for _ in $(seq 100); do ss -Hltn | grep -q ':2222' && break; sleep 0.05; done

try() { # source password -> prints the ssh result
    local src=$1 pw=$2
    if timeout 10 sshpass -p "$pw" ssh -q -b "$src" -p 2222 \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 \
        -o ConnectTimeout=3 demo@127.0.0.1 'echo logged in as $(whoami)' 2>/dev/null; then
        return 0
    fi
    return 1
}
evaluated() { grep -c "^$1\$" "$tmp/evaluated.log" 2>/dev/null || true; }

say "sshd runs in a private network namespace; /etc/pam.d/sshd has ONE banguard line:"
grep -n "pam_banguard" /etc/pam.d/sshd | sed 's/^/   /'

say "An attacker at 192.0.2.7 tries 6 wrong passwords (maxretry = 3)"
for i in 1 2 3 4 5 6; do
    if try 192.0.2.7 "guess$i"; then bad "guess$i: logged in?!"; else echo "   guess$i: refused"; fi
done
n=$(evaluated 192.0.2.7)
ok "passwords actually checked for 192.0.2.7: $n of 6 (banguard refused the rest before any password check)"

say "The attacker now has the RIGHT password, but is banned"
if try 192.0.2.7 correct-horse; then bad "logged in: banguard did not refuse"; else ok "refused (still $(evaluated 192.0.2.7) passwords checked: the right one was never looked at)"; fi

say "Someone else, at 198.51.100.20, logs in normally"
if out=$(try 198.51.100.20 correct-horse); then ok "$out"; else bad "could not log in"; fi

say "banguardctl list (what support staff see)"
"$ctl" --config "$tmp/banguard.toml" list | sed 's/^/   /'

say "banguardctl sync pushes the ban into the kernel (nftables set with a timeout)"
"$ctl" --config "$tmp/banguard.toml" sync | sed 's/^/   /'
nft list table inet banguard | sed 's/^/   /'
if timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2222' 2>/dev/null; then
    echo "   (127.0.0.1 itself still connects; only the attacker's source is dropped)"
fi
if timeout 3 ssh -q -b 192.0.2.7 -p 2222 -o ConnectTimeout=2 -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null demo@127.0.0.1 true 2>/dev/null; then
    bad "192.0.2.7 still reaches sshd"
else
    ok "TCP from 192.0.2.7 to port 2222 is now dropped by the kernel: no key exchange, no sshd work"
fi

say "banguardctl metrics (what Prometheus reads through node_exporter; status draws the last day)"
"$ctl" --config "$tmp/banguard.toml" metrics | grep -E '^banguard_(attempts_total|bans_total|bans_active)' | sed 's/^/   /'
"$ctl" --config "$tmp/banguard.toml" status sshd | grep -A2 'Last 24 hours' | sed 's/^/   /'

say "banguardctl unban 192.0.2.7 (removes the ban and the kernel entry at once)"
"$ctl" --config "$tmp/banguard.toml" unban 192.0.2.7 | sed 's/^/   /'
if out=$(try 192.0.2.7 correct-horse); then ok "192.0.2.7: $out"; else bad "192.0.2.7 still refused"; fi

say "Done. The namespace, its sshd and its firewall vanish now; the temp dir is removed."
