# banguard: build, test, demo, install.
#
#   make deps test     install the test prerequisites (Debian/Ubuntu, root) and run every test
#   make demo          a real sshd in a throwaway namespace, brute-forced and refused (root)
#   make install       install (PREFIX, DESTDIR honoured); never touches /etc/pam.d
#   make enable-pam    pam-auth-update --enable banguard banguard-success (common-auth gets both lines)
#   make uninstall     remove what install put there (keeps /etc/banguard and the store)
#   make deb           build dist/banguard_<version>_<arch>.deb with dpkg-deb
#   make man           generate banguardctl(8) from the clap definitions
#   make bench         the benchmarks recorded in BENCHMARKS.md
#   make bench-deps    install pyinotify and pam_abl for bench/bruteforce/run.sh

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE = $(TARGET_DIR)/release
VERSION = 0.1.0
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
# On a first install the sync units are enabled (started where systemd
# runs): the path unit syncs the moment the module bans a host, the timer
# every minute. Packages set `no`: their maintainer scripts do it.
ENABLE_UNITS ?= yes
SYNC_UNITS = banguard-sync.path banguard-sync.timer
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
# Where libpam looks for modules: next to pam_unix.so.
PAMDIR ?= $(shell d=$$(find /lib /usr/lib /lib64 /usr/lib64 -name pam_unix.so 2>/dev/null | head -1); \
	if [ -n "$$d" ]; then dirname "$$d"; else echo /lib/security; fi)
# Fixed paths, whatever PREFIX: the module and banguardctl read /etc/banguard,
# pam-auth-update reads /usr/share/pam-configs, cron reads /etc/cron.d.
CONFDIR = /etc/banguard
PAMCONFIGDIR = /usr/share/pam-configs
CRONDIR = /etc/cron.d
STATEDIR = /var/lib/banguard
MAN_PAGES = $(RELEASE)/man/pam_banguard.8 doc/man/banguard.toml.5 $(RELEASE)/man/banguardctl.8
STRIP ?= strip
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DEB_MULTIARCH = $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
DEB_STAGE ?= $(TARGET_DIR)/deb/banguard
DEB_COMPRESS ?= -Zxz
DEB_FILE ?= dist/banguard_$(VERSION)_$(DEB_ARCH).deb

# Debian packages the end-to-end tests drive for real.
TEST_PACKAGES = openssh-server openssh-client pamtester libpam0g-dev \
	iptables ipset nftables vsftpd tcpd sshpass curl \
	gcc libc6-dev binutils pkgconf iproute2 util-linux procps psmisc openssl \
	groff-base mandoc dpkg-dev fakeroot python3 systemd dovecot-imapd sqlite3 fail2ban \
	selinux-policy-dev selinux-policy-default setools rpm rpmlint crowdsec \
	prometheus prometheus-node-exporter

.PHONY: all build test deps bench-deps demo bench clean install uninstall enable-pam deb man selinux rpm floor

all: build

build:
	$(CARGO) build --release --workspace

# Keeps package scripts from starting sshd/vsftpd/fail2ban/crowdsec/prometheus
# on this machine while installing, and fail2ban, crowdsec and prometheus
# (with its node exporter) from starting at boot
# (fail2ban would change this machine's firewall); the tests start their
# own, inside network namespaces or on loopback. crowdsec's package registers
# with the central API unless told not to (its README.Debian): the tests need
# no internet.
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root (it uses apt-get)"; exit 2; fi
	@created=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created=1; fi; \
	mkdir -p /etc/crowdsec; [ -e /etc/crowdsec/online_api_credentials.yaml ] || \
		echo '# no central API (banguard tests run their own LAPI offline)' > /etc/crowdsec/online_api_credentials.yaml; \
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(TEST_PACKAGES); rc=$$?; \
	if [ $$created = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	if [ -d /run/systemd/system ]; then systemctl disable --now fail2ban crowdsec prometheus prometheus-node-exporter 2>/dev/null || true; \
	else systemctl disable fail2ban crowdsec prometheus prometheus-node-exporter 2>/dev/null || true; fi; \
	[ $$rc = 0 ] || exit $$rc; \
	python3 -m pip install --quiet --disable-pip-version-check --break-system-packages $(FLOOR_TOOLS)

# Release binaries that load on glibc 2.28 (RHEL 8): built with zig's
# linker against that glibc's symbol versions (cargo-zigbuild). zig does
# not search the multiarch dir, and that dir's older libsqlite3 must not
# shadow the bundled one: only libpam is offered, from a private dir.
FLOOR_TOOLS = cargo-zigbuild==0.24.1 ziglang==0.17.1
FLOOR_GLIBC = 2.28
FLOOR_TARGET = x86_64-unknown-linux-gnu
FLOOR_DIR = $(TARGET_DIR)/$(FLOOR_TARGET)/release
floor:
	mkdir -p $(TARGET_DIR)/floor-libs
	ln -sf $$(gcc -print-file-name=libpam.so) $(TARGET_DIR)/floor-libs/libpam.so
	PATH="$$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$$PATH" \
	RUSTFLAGS="-L native=$(abspath $(TARGET_DIR))/floor-libs" $(CARGO) zigbuild --release \
		--target $(FLOOR_TARGET).$(FLOOR_GLIBC) -p pam_banguard -p banguard-capi -p banguardctl

# Every test: unit, integration, and end-to-end against real programs
# (end-to-end tests need root; outside CI they skip loudly without it);
# then the PAM stack tests again with the glibc 2.28 build of the module.
test:
	$(CARGO) build --workspace --all-targets
	rm -f $(TARGET_DIR)/e2e-skipped.txt
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory floor
	BANGUARD_TEST_ARTIFACTS=$(abspath $(FLOOR_DIR)) $(CARGO) test -p banguard-e2e --test e2e pam_stack::
	@if [ -s $(TARGET_DIR)/e2e-skipped.txt ]; then \
		echo; echo "SKIPPED, prerequisites missing (with CI=true each is a failure):"; \
		sed 's/^/  /' $(TARGET_DIR)/e2e-skipped.txt; fi

demo:
	bash tests/demo.sh

bench:
	$(CARGO) bench -p banguard --bench attempt

# What bench/bruteforce/run.sh compares banguard with (fail2ban itself
# comes with `deps`: the import tests run it too). libpam-abl is NOT installed
# (its package runs pam-auth-update, which adds pam_abl to this machine's
# common-auth): run.sh extracts pam_abl.so from the downloaded package.
bench-deps: deps
	@created=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created=1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pyinotify libdb5.3; rc=$$?; \
	if [ $$created = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc

clean:
	$(CARGO) clean
	rm -rf dist

# banguardctl(8) is generated from the clap definitions (hidden `man`
# command), so it never drifts from --help; pam_banguard(8) from its one
# source, doc/pam_banguard.md (built into banguardctl).
man: $(RELEASE)/man/banguardctl.8 $(RELEASE)/man/pam_banguard.8

$(RELEASE)/man/banguardctl.8: $(RELEASE)/banguardctl
	mkdir -p $(RELEASE)/man
	$(RELEASE)/banguardctl man > $@.$$$$.tmp && mv $@.$$$$.tmp $@

$(RELEASE)/man/pam_banguard.8: $(RELEASE)/banguardctl doc/pam_banguard.md
	mkdir -p $(RELEASE)/man
	$(RELEASE)/banguardctl man pam_banguard > $@.$$$$.tmp && mv $@.$$$$.tmp $@

$(RELEASE)/banguardctl $(RELEASE)/libpam_banguard.so $(RELEASE)/libbanguard_capi.so:
	$(CARGO) build --release -p banguardctl -p pam_banguard -p banguard-capi

# Installs the built artifacts (building them first if they are missing;
# `make build` first as a normal user is the usual way). Never touches
# /etc/pam.d: `make enable-pam` or `pam-auth-update --enable banguard banguard-success` does.
install: $(RELEASE)/banguardctl $(RELEASE)/libpam_banguard.so $(RELEASE)/libbanguard_capi.so man
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PAMDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(PAMCONFIGDIR) $(DESTDIR)$(CRONDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(CONFDIR)/banguard.d
	install -d -m 0700 $(DESTDIR)$(STATEDIR)
	install -m 0755 $(RELEASE)/banguardctl $(DESTDIR)$(SBINDIR)/banguardctl
	$(STRIP) $(DESTDIR)$(SBINDIR)/banguardctl
	install -m 0644 $(RELEASE)/libpam_banguard.so $(DESTDIR)$(PAMDIR)/pam_banguard.so
	$(STRIP) --strip-unneeded $(DESTDIR)$(PAMDIR)/pam_banguard.so
	install -m 0644 $(RELEASE)/libbanguard_capi.so $(DESTDIR)$(LIBDIR)/libbanguard.so.$(VERSION)
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/libbanguard.so.$(VERSION)
	ln -sfn libbanguard.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbanguard.so.0
	ln -sfn libbanguard.so.0 $(DESTDIR)$(LIBDIR)/libbanguard.so
	install -m 0644 libbanguard/capi/include/banguard.h $(DESTDIR)$(INCLUDEDIR)/banguard.h
	sed -e '/^#/d' -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
		libbanguard/capi/banguard.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/banguard.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/banguard.pc
	install -m 0644 $(RELEASE)/man/pam_banguard.8 $(RELEASE)/man/banguardctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 doc/man/banguard.toml.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 conf/pam-configs/banguard $(DESTDIR)$(PAMCONFIGDIR)/banguard
	install -m 0644 conf/pam-configs/banguard-success $(DESTDIR)$(PAMCONFIGDIR)/banguard-success
	sed -e 's|/usr/sbin/banguardctl|$(SBINDIR)/banguardctl|g' conf/cron.d/banguard > $(DESTDIR)$(CRONDIR)/banguard
	chmod 0644 $(DESTDIR)$(CRONDIR)/banguard
	install -m 0644 conf/tmpfiles.d/banguard.conf $(DESTDIR)$(TMPFILESDIR)/banguard.conf
	@fresh=yes; [ -e $(DESTDIR)$(SYSTEMDUNITDIR)/banguard-sync.path ] && fresh=no; \
	for u in banguard-sync.service banguard-sync.timer banguard-sync.path banguard-fleet.timer; do \
		sed -e 's|/usr/sbin/banguardctl|$(SBINDIR)/banguardctl|g' conf/systemd/$$u > $(DESTDIR)$(SYSTEMDUNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u || exit 1; done; \
	if [ $$fresh = yes ] && [ "$(ENABLE_UNITS)" = yes ] && command -v systemctl >/dev/null; then \
		if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
			systemctl daemon-reload && systemctl enable --now $(SYNC_UNITS); \
		else systemctl --root=$(DESTDIR)/ enable $(SYNC_UNITS); fi && \
		echo "make install: $(SYNC_UNITS) enabled: the sync runs the moment a host is banned, and every minute" || \
		echo "make install: could not enable $(SYNC_UNITS) ($(SYSTEMDUNITDIR) is not where systemd looks?): the cron job syncs every minute"; fi
	@if [ -e $(DESTDIR)$(CONFDIR)/banguard.toml ]; then \
		install -m 0644 conf/banguard.toml $(DESTDIR)$(CONFDIR)/banguard.toml.dist; \
		echo "make install: kept your $(CONFDIR)/banguard.toml; the shipped one is $(CONFDIR)/banguard.toml.dist"; \
	else install -m 0644 conf/banguard.toml $(DESTDIR)$(CONFDIR)/banguard.toml; fi
	@if [ "$$(id -u)" = 0 ]; then chown -R root:root $(DESTDIR)$(CONFDIR) $(DESTDIR)$(STATEDIR); fi
	@if [ -z "$(DESTDIR)" ]; then ldconfig 2>/dev/null || true; \
		echo "make install: done. Turn it on with: pam-auth-update --enable banguard banguard-success   (or: make enable-pam)"; \
		echo "              or add 'auth requisite pam_banguard.so' before '@include common-auth' in /etc/pam.d/sshd"; fi

enable-pam:
	pam-auth-update --enable banguard banguard-success

# Removes what install put there. Kept: /etc/banguard (the admin's config)
# and /var/lib/banguard (the store). Drops banguard from pam-auth-update
# first, and refuses while a hand-written /etc/pam.d line still loads the
# module: a stack naming a missing module fails every login through it.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -e $(PAMCONFIGDIR)/banguard ] && command -v pam-auth-update >/dev/null; then \
		pam-auth-update --package --remove banguard banguard-success; fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ] && [ -e $(SYSTEMDUNITDIR)/banguard-sync.path ]; then \
		systemctl disable --now $(SYNC_UNITS) banguard-fleet.timer 2>/dev/null || true; \
	elif [ -e $(DESTDIR)$(SYSTEMDUNITDIR)/banguard-sync.path ] && command -v systemctl >/dev/null; then \
		systemctl --root=$(DESTDIR)/ disable $(SYNC_UNITS) banguard-fleet.timer >/dev/null 2>&1 || true; fi
	@if [ -z "$(DESTDIR)" ] && [ -z "$(FORCE)" ] && refs=$$(grep -lE '^[^#]*pam_banguard\.so' /etc/pam.d/* 2>/dev/null); then \
		echo "make uninstall: these still load pam_banguard.so; remove the line first (or FORCE=1):" $$refs; exit 1; fi
	rm -f $(DESTDIR)$(SBINDIR)/banguardctl $(DESTDIR)$(PAMDIR)/pam_banguard.so \
		$(DESTDIR)$(LIBDIR)/libbanguard.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbanguard.so.0 \
		$(DESTDIR)$(LIBDIR)/libbanguard.so $(DESTDIR)$(INCLUDEDIR)/banguard.h \
		$(DESTDIR)$(PKGCONFIGDIR)/banguard.pc $(DESTDIR)$(MANDIR)/man8/pam_banguard.8 \
		$(DESTDIR)$(MANDIR)/man8/banguardctl.8 $(DESTDIR)$(MANDIR)/man5/banguard.toml.5 \
		$(DESTDIR)$(PAMCONFIGDIR)/banguard $(DESTDIR)$(PAMCONFIGDIR)/banguard-success $(DESTDIR)$(CRONDIR)/banguard \
		$(DESTDIR)$(SYSTEMDUNITDIR)/banguard-sync.service $(DESTDIR)$(SYSTEMDUNITDIR)/banguard-sync.timer \
		$(DESTDIR)$(SYSTEMDUNITDIR)/banguard-sync.path $(DESTDIR)$(SYSTEMDUNITDIR)/banguard-fleet.timer \
		$(DESTDIR)$(TMPFILESDIR)/banguard.conf \
		$(DESTDIR)$(CONFDIR)/banguard.toml.dist
	@echo "make uninstall: kept $(CONFDIR) (your config) and $(STATEDIR) (the store); rm -r them to forget everything"

# The SELinux policy module (packaging/selinux), compiled against the
# policy headers of this machine (selinux-policy-dev on Debian,
# selinux-policy-devel on RHEL/Fedora).
SELINUX_DEVEL ?= /usr/share/selinux/devel/Makefile
selinux: $(RELEASE)/selinux/banguard.pp
$(RELEASE)/selinux/banguard.pp: packaging/selinux/banguard.te packaging/selinux/banguard.if packaging/selinux/banguard.fc
	rm -rf $(RELEASE)/selinux && mkdir -p $(RELEASE)/selinux
	cp packaging/selinux/banguard.te packaging/selinux/banguard.if packaging/selinux/banguard.fc $(RELEASE)/selinux/
	$(MAKE) --no-print-directory -C $(RELEASE)/selinux -f $(SELINUX_DEVEL) banguard.pp

# An RPM for RHEL 8 and later (packaging/rpm/banguard.spec, a plain spec:
# rpm's own scriptlets and Fedora's SELinux pattern, which
# cargo-generate-rpm cannot express): the glibc 2.28 build, staged with
# `make install` in RHEL's paths, packaged by rpmbuild into RPM_DIST
# (banguard, banguard-devel, banguard-selinux). On a RHEL build host,
# `rpmbuild -bb packaging/rpm/banguard.spec` in the source tree builds from
# source instead.
RPM_TOP = $(TARGET_DIR)/rpm
RPM_STAGE = $(abspath $(RPM_TOP))/stage
RPM_DIST ?= dist
rpm: floor
	$(MAKE) --no-print-directory man selinux RELEASE=$(FLOOR_DIR)
	rm -rf $(RPM_TOP) && mkdir -p $(RPM_STAGE)
	$(MAKE) --no-print-directory install RELEASE=$(FLOOR_DIR) DESTDIR=$(RPM_STAGE) PREFIX=/usr ENABLE_UNITS=no \
		SBINDIR=/usr/sbin LIBDIR=/usr/lib64 PAMDIR=/usr/lib64/security \
		SYSTEMDUNITDIR=/usr/lib/systemd/system TMPFILESDIR=/usr/lib/tmpfiles.d
	rm -rf $(RPM_STAGE)/usr/share/pam-configs $(RPM_STAGE)/etc/cron.d $(RPM_STAGE)/etc/banguard/banguard.toml.dist
	gzip -9n $(RPM_STAGE)/usr/share/man/man*/*
	chmod 0755 $(RPM_STAGE)/usr/lib64/libbanguard.so.$(VERSION) $(RPM_STAGE)/usr/lib64/security/pam_banguard.so
	install -D -m 0644 README.md $(RPM_STAGE)/usr/share/doc/banguard/README.md
	install -D -m 0755 packaging/authselect/banguard-authselect $(RPM_STAGE)/usr/sbin/banguard-authselect
	install -D -m 0644 $(FLOOR_DIR)/selinux/banguard.pp $(RPM_STAGE)/usr/share/selinux/packages/targeted/banguard.pp
	bzip2 -9 $(RPM_STAGE)/usr/share/selinux/packages/targeted/banguard.pp
	install -D -m 0644 packaging/selinux/banguard.if $(RPM_STAGE)/usr/share/selinux/devel/include/distributed/banguard.if
	mkdir -p $(RPM_DIST)
	rpmbuild -bb --nodeps --quiet --define "_topdir $(abspath $(RPM_TOP))" --define "stage $(RPM_STAGE)" \
		--define "_rpmdir $(abspath $(RPM_DIST))" --define "_build_id_links none" --define "__brp_compress true" \
		packaging/rpm/banguard.spec
	@echo "make rpm: $$(find $(RPM_DIST) -name 'banguard*-$(VERSION)-*.rpm' | sort | tr '\n' ' ')"

# A Debian package built with dpkg-deb from a `make install` staging tree
# (no cargo-deb, no network). Paths follow Debian: /usr, the multiarch
# libdir, the PAM directory libpam-modules uses, /lib/systemd/system.
deb: $(RELEASE)/banguardctl $(RELEASE)/libpam_banguard.so $(RELEASE)/libbanguard_capi.so man
	rm -rf $(DEB_STAGE)
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_STAGE)) PREFIX=/usr ENABLE_UNITS=no \
		LIBDIR=/usr/lib/$(DEB_MULTIARCH) SYSTEMDUNITDIR=/lib/systemd/system \
		PAMDIR=/lib/$(DEB_MULTIARCH)/security TARGET_DIR=$(TARGET_DIR)
	rm -rf $(DEB_STAGE)$(STATEDIR) $(DEB_STAGE)/var
	gzip -9n $(DEB_STAGE)/usr/share/man/man*/*
	install -d -m 0755 $(DEB_STAGE)/DEBIAN $(DEB_STAGE)/usr/share/doc/banguard
	install -m 0644 README.md $(DEB_STAGE)/usr/share/doc/banguard/README.md
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@ARCH@/$(DEB_ARCH)/' \
		-e "s/@SIZE@/$$(du -sk --exclude=DEBIAN $(DEB_STAGE) | cut -f1)/" \
		packaging/debian/control > $(DEB_STAGE)/DEBIAN/control
	install -m 0644 packaging/debian/conffiles $(DEB_STAGE)/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(DEB_STAGE)/DEBIAN/
	mkdir -p dist
	dpkg-deb --root-owner-group $(DEB_COMPRESS) --build $(DEB_STAGE) $(DEB_FILE)
	@echo "make deb: $(DEB_FILE)"
