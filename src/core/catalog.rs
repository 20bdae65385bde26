//! The check catalog: one TOML entry per check in `checks/`, embedded at build time (as the code that
//! builds each entry, see build.rs).

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::{Role, Status};

include!(concat!(env!("OUT_DIR"), "/catalog_entries.rs"));
#[cfg(test)]
include!(concat!(env!("OUT_DIR"), "/catalog_files.rs"));

/// One check as the catalog describes it to people.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub id: String,
    pub title: String,
    /// What the user sees when this pitfall bites (an error message, a log line).
    pub symptom: String,
    pub why: String,
    /// The worst status this check reports.
    pub severity: Status,
    pub roles: Vec<Role>,
    pub remediation: String,
    #[serde(default)]
    pub references: Vec<String>,
    /// Whether `k8sdoctor fix` can repair it.
    #[serde(default)]
    pub fix: bool,
    /// kubeadm's preflight names this check covers (`Swap`, `Port-6443` ...): accepted by --only/--skip.
    #[serde(default)]
    pub kubeadm: Vec<String>,
}

impl Entry {
    pub fn applies_to(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// The parsed catalog, sorted by id. Parsed once; a broken entry is a build bug caught by tests.
pub fn catalog() -> &'static [Entry] {
    static CATALOG: OnceLock<Vec<Entry>> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut v = builtin_entries();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    })
}

/// Looks an entry up by id, case-insensitively.
pub fn find(id: &str) -> Option<&'static Entry> {
    catalog().iter().find(|e| e.id.eq_ignore_ascii_case(id))
}

/// Replaces each kubeadm preflight name (`Swap`, `Port-6443`, `SystemVerification` ...) by the ids of the
/// checks that cover it, matched like kubeadm's `--ignore-preflight-errors`: exact, case-insensitive.
/// Our own ids and anything unknown pass through unchanged.
pub fn expand_kubeadm_names(names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let ids: Vec<String> = catalog()
            .iter()
            .filter(|e| !e.id.eq_ignore_ascii_case(n))
            .filter(|e| e.kubeadm.iter().any(|k| k.eq_ignore_ascii_case(n)))
            .map(|e| e.id.clone())
            .collect();
        if ids.is_empty() {
            out.push(n.clone());
        } else {
            out.extend(ids);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeadm_names_expand_to_our_ids() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(expand_kubeadm_names(&v(&["swap"])), ["swap.active"]);
        assert_eq!(expand_kubeadm_names(&v(&["Port-6443"])), ["ports.in-use"]);
        assert_eq!(
            expand_kubeadm_names(&v(&["FileContent--proc-sys-net-ipv4-ip_forward"])),
            ["sysctl.ip-forward"]
        );
        assert_eq!(
            expand_kubeadm_names(&v(&["SystemVerification"])),
            ["cgroup.version", "kernel.config"]
        );
        assert_eq!(
            expand_kubeadm_names(&v(&["all", "dns.loopback-nameserver", "bogus"])),
            ["all", "dns.loopback-nameserver", "bogus"]
        );
        // No kubeadm name is also one of our ids, and each names checks that exist.
        for e in catalog() {
            for k in &e.kubeadm {
                assert!(find(k).is_none(), "{k} is both a kubeadm name and an id");
            }
        }
    }

    #[test]
    fn every_entry_parses_and_file_names_match_ids() {
        assert_eq!(catalog().len(), CATALOG_FILES.len());
        for (name, text) in CATALOG_FILES {
            let e: Entry = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            // The entry start-up builds is the one serde makes of the same file.
            let built = find(&e.id).unwrap_or_else(|| panic!("{name}: not built"));
            assert_eq!(
                serde_json::to_value(built).unwrap(),
                serde_json::to_value(&e).unwrap(),
                "{name}"
            );
            assert_eq!(*name, format!("{}.toml", e.id), "file name must be the id");
            assert!(!e.roles.is_empty(), "{name}: no roles");
            assert!(
                matches!(e.severity, Status::Warn | Status::Fail),
                "{name}: severity is warn or fail"
            );
            assert!(!e.symptom.trim().is_empty() && !e.remediation.trim().is_empty());
        }
    }
}
