//! The check catalog: one TOML entry per check in `checks/`, embedded at build time (as JSON, see build.rs).

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::status::{Role, Status};

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
        let mut v: Vec<Entry> = CATALOG_FILES
            .iter()
            .map(|(name, text)| {
                serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("checks/{name} is invalid: {e}"))
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    })
}

/// Looks an entry up by id, case-insensitively.
pub fn find(id: &str) -> Option<&'static Entry> {
    catalog().iter().find(|e| e.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_parses_and_file_names_match_ids() {
        for (name, text) in CATALOG_FILES {
            let e: Entry = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
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
