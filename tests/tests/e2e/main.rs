//! banguard's end-to-end tests, one binary: every module below runs real
//! programs (libpam through pamtester and `pam_start_confdir`, sshd,
//! vsftpd, Dovecot, fail2ban, nft, ipset, iptables, a C compiler) in network
//! namespaces the tests create and remove. `cargo test -p banguard-e2e`;
//! one file: `cargo test -p banguard-e2e --test e2e pam_stack::`.
//!
//! A test whose prerequisite (root, a program) is missing fails in CI and
//! is counted as skipped elsewhere: `make test` lists the skipped tests at
//! the end.

mod account_spray;
mod authselect;
mod ban_to_drop;
mod capi;
mod cli;
mod concurrency;
mod dovecot_module;
mod faults;
mod firewall;
mod fleet;
mod fleet_hostile;
mod floor;
mod harness;
mod hosts_deny;
mod import_fail2ban;
mod import_hostile;
mod install;
mod man;
mod metrics;
mod module_guest;
mod pam_stack;
mod rpm;
mod selinux;
mod sshd_harness;
mod sshd_module;
mod vsftpd_module;
