//! One file as written: every key optional, every value checked while it
//! is parsed (so an error carries its line), merged file by file (later
//! files win key by key), then applied over the defaults.
//!
//! Each section's keys are listed once, in its [`section!`] invocation:
//! the struct serde fills, the merge and the apply are generated from that
//! list. (`serde(flatten)` would lose the values' line numbers.)

use super::values::*;
use super::{
    AccountsConfig, Config, CrowdsecConfig, FailMode, FleetProvider, MailConfig, MetricsConfig, Recidive,
    ServicePolicy, StoreConfig, SyncConfig, SyncScope, Synchronous,
};
use crate::duration::BanTime;
use crate::sync::BackendKind;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Defines the raw form of a section: `key: Type` (or `key: Type =>
/// "checker"`, a `de_*` function of `values`) for every key that applies
/// to the typed section, and `extra { ... }` for keys the caller applies
/// itself.
macro_rules! section {
    (
        $(#[$meta:meta])*
        $raw:ident => $typed:ty {
            $( $field:ident : $ty:ty $( => $de:literal )? ),* $(,)?
        }
        $( extra { $( $xfield:ident : $xty:ty $( => $xde:literal )? ),* $(,)? } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct $raw {
            $( $( #[serde(default, deserialize_with = $de)] )? pub(super) $field: Option<$ty>, )*
            $( $( $( #[serde(default, deserialize_with = $xde)] )? pub(super) $xfield: Option<$xty>, )* )?
        }

        impl $raw {
            /// A later file's keys win, one by one.
            pub(super) fn merge(&mut self, later: $raw) {
                $( if later.$field.is_some() { self.$field = later.$field; } )*
                $( $( if later.$xfield.is_some() { self.$xfield = later.$xfield; } )* )?
            }

            /// The keys set in the files overwrite the effective settings.
            pub(super) fn apply(&self, to: &mut $typed) {
                $( if let Some(v) = &self.$field { to.$field = v.clone(); } )*
            }
        }
    };
}

/// `[default]` and `[services.NAME]` share the policy keys, listed here
/// once; `[default]` also says where the store lives.
macro_rules! policy_sections {
    ($( $(#[$meta:meta])* $raw:ident $( extra $extra:tt )? );* $(;)?) => {
        $(
            section! {
                $(#[$meta])*
                $raw => ServicePolicy {
                    enabled: bool,
                    maxretry: u32 => "de_maxretry",
                    findtime: i64 => "de_duration",
                    bantime: BanTime => "de_bantime",
                    bantime_factor: f64 => "de_factor",
                    bantime_max: i64 => "de_duration",
                    bantime_lookback: i64 => "de_duration",
                    ignoreip: Vec<IpNet> => "de_cidrs",
                    failmode: FailMode,
                    ipv4_prefix: u8 => "de_prefix4",
                    ipv6_prefix: u8 => "de_prefix6",
                    reset_on_success: bool,
                    refusal_delay: i64 => "de_refusal_delay",
                }
                $( extra $extra )?
            }
        )*
    };
}

policy_sections! {
    /// `[services.NAME]`.
    RawPolicy;
    /// `[default]`.
    RawDefault extra { database: PathBuf => "de_abs_path" };
}

section! {
    /// `[recidive]`.
    RawRecidive => Recidive {
        enabled: bool,
        bans: u32 => "de_maxretry",
        findtime: i64 => "de_duration",
        bantime: BanTime => "de_bantime",
    }
}

section! {
    /// `[sync]`.
    RawSync => SyncConfig {
        backends: Vec<BackendKind> => "de_backends",
        scope: SyncScope,
        hosts_deny: PathBuf => "de_abs_path",
        trigger_file: PathBuf => "de_abs_path",
        lock_file: PathBuf => "de_abs_path",
        widest_ipv4_prefix: u8 => "de_widest4",
        widest_ipv6_prefix: u8 => "de_widest6",
        escalate_after: u32 => "de_escalate_after",
    }
}

section! {
    /// `[mail]`.
    RawMail => MailConfig {
        enabled: bool,
        to: String => "de_mailbox",
        from: String => "de_mailbox",
        sendmail: PathBuf => "de_abs_path",
    }
}

section! {
    /// `[metrics]`.
    RawMetrics => MetricsConfig {
        enabled: bool,
        textfile: PathBuf => "de_prom_path",
    }
}

section! {
    /// `[store]`.
    RawStore => StoreConfig {
        runtime: PathBuf => "de_abs_path",
        synchronous: Synchronous,
        busy_timeout_ms: u32 => "de_busy",
        max_failures: u64,
        history: i64 => "de_duration",
    }
}

section! {
    /// `[fleet.crowdsec]`.
    RawCrowdsec => CrowdsecConfig {
        url: String => "de_url",
        machine_credentials: PathBuf => "de_abs_path",
        bouncer_key_file: PathBuf => "de_abs_path",
        ca_cert: PathBuf => "de_abs_path_or_none",
        client_cert: PathBuf => "de_abs_path_or_none",
        client_key: PathBuf => "de_abs_path_or_none",
        timeout: i64 => "de_duration",
        export: bool,
        import: bool,
        import_origins: Vec<String>,
        import_scenarios: Vec<String>,
        max_decisions: u64,
        resync: i64 => "de_duration",
        insecure_skip_verify: bool,
    }
}

section! {
    /// `[accounts]`.
    RawAccounts => AccountsConfig {
        enabled: bool,
        budget: u32 => "de_budget",
        refill: i64 => "de_duration",
        lock: i64 => "de_duration",
        lock_max: i64 => "de_duration",
        learning: i64 => "de_duration_or_zero",
        familiar_ipv4_prefix: u8 => "de_prefix4",
        familiar_ipv6_prefix: u8 => "de_prefix6",
        familiar_max: u32 => "de_familiar_max",
        familiar_for: i64 => "de_duration",
        max_tracked: u64 => "de_max_tracked",
    }
}

/// `[fleet]`: a key and a table, merged key by key inside the table too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    provider: Option<FleetProvider>,
    crowdsec: Option<RawCrowdsec>,
}

/// A whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    default: Option<RawDefault>,
    #[serde(default)]
    pub(super) services: BTreeMap<String, RawPolicy>,
    recidive: Option<RawRecidive>,
    sync: Option<RawSync>,
    mail: Option<RawMail>,
    metrics: Option<RawMetrics>,
    store: Option<RawStore>,
    fleet: Option<RawFleet>,
    accounts: Option<RawAccounts>,
}

/// Merges an optional section of a later file into this one's.
fn merge_section<T: Default>(mine: &mut Option<T>, later: Option<T>, merge: impl FnOnce(&mut T, T)) {
    if let Some(l) = later {
        merge(mine.get_or_insert_with(T::default), l);
    }
}

impl RawFile {
    /// A later file's keys win, one by one.
    pub(super) fn merge(&mut self, later: RawFile) {
        merge_section(&mut self.default, later.default, RawDefault::merge);
        for (name, p) in later.services {
            self.services.entry(name).or_default().merge(p);
        }
        merge_section(&mut self.recidive, later.recidive, RawRecidive::merge);
        merge_section(&mut self.sync, later.sync, RawSync::merge);
        merge_section(&mut self.mail, later.mail, RawMail::merge);
        merge_section(&mut self.metrics, later.metrics, RawMetrics::merge);
        merge_section(&mut self.store, later.store, RawStore::merge);
        merge_section(&mut self.accounts, later.accounts, RawAccounts::merge);
        merge_section(&mut self.fleet, later.fleet, |mine, l| {
            if l.provider.is_some() {
                mine.provider = l.provider;
            }
            merge_section(&mut mine.crowdsec, l.crowdsec, RawCrowdsec::merge);
        });
    }

    /// The merged files over the defaults in `c`.
    pub(super) fn apply(&self, c: &mut Config) {
        if let Some(d) = &self.default {
            if let Some(db) = &d.database {
                c.database = db.clone();
            }
            d.apply(&mut c.default);
        }
        for (name, raw) in &self.services {
            let mut p = c.default.clone();
            raw.apply(&mut p);
            c.services.insert(name.clone(), p);
        }
        if let Some(r) = &self.recidive {
            r.apply(&mut c.recidive);
        }
        if let Some(s) = &self.sync {
            s.apply(&mut c.sync);
        }
        if let Some(m) = &self.mail {
            m.apply(&mut c.mail);
        }
        if let Some(m) = &self.metrics {
            m.apply(&mut c.metrics);
        }
        if let Some(s) = &self.store {
            s.apply(&mut c.store);
        }
        if let Some(a) = &self.accounts {
            a.apply(&mut c.accounts);
        }
        if let Some(f) = &self.fleet {
            if let Some(p) = f.provider {
                c.fleet.provider = p;
            }
            if let Some(r) = &f.crowdsec {
                r.apply(&mut c.fleet.crowdsec);
            }
        }
        if self.store.as_ref().is_none_or(|s| s.runtime.is_none()) {
            c.store.runtime = super::default_runtime(&c.database);
        }
    }
}
