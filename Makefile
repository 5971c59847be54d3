# banguard: build, test, demo, install.
#
#   make deps test     install the test prerequisites (Debian/Ubuntu, root) and run every test
#   make demo          a real sshd in a throwaway namespace, brute-forced and refused (root)
#   make install       install (PREFIX, DESTDIR honoured); never touches /etc/pam.d
#   make bench         the benchmarks recorded in BENCHMARKS.md

CARGO ?= cargo
PREFIX ?= /usr/local

# Debian packages the end-to-end tests drive for real.
TEST_PACKAGES = openssh-server openssh-client pamtester libpam0g-dev \
	iptables ipset nftables vsftpd tcpd sshpass curl \
	gcc libc6-dev binutils pkgconf iproute2 util-linux procps psmisc openssl \
	groff-base mandoc

.PHONY: all build test deps demo bench clean

all: build

build:
	$(CARGO) build --release --workspace

# Keeps package scripts from starting sshd/vsftpd on this machine while
# installing; the tests start their own, inside network namespaces.
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (it uses apt-get)"; exit 2; fi
	@created=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created=1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES); rc=$$?; \
	if [ $$created = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc

# Every test: unit, integration, and end-to-end against real programs
# (end-to-end tests need root; outside CI they skip loudly without it).
test:
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace

demo:
	bash tests/demo.sh

bench:
	$(CARGO) bench -p banguard --bench attempt

clean:
	$(CARGO) clean
