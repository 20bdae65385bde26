//! The table of API lifecycles (`api-lifecycles.toml`, embedded): which group/version of which kind
//! is deprecated and removed in which release, and what replaces it.

use std::{fmt, sync::OnceLock};

use serde::Deserialize;

/// A Kubernetes minor release, `1.22`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u32,
    pub minor: u32,
}

impl Minor {
    /// `1.22`, `v1.22`, `v1.22.3`, `1.22.0-eks-1`; None for anything else.
    pub fn parse(text: &str) -> Option<Minor> {
        let v = crate::checks::cluster::version::Version::parse(text)?;
        Some(Minor {
            major: v.major,
            minor: v.minor,
        })
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl<'de> Deserialize<'de> for Minor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Minor, D::Error> {
        let s = String::deserialize(d)?;
        Minor::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a version: {s:?}")))
    }
}

/// One place a removed API's objects can go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replacement {
    pub api_version: String,
    /// The first release that serves it.
    pub since: Minor,
}

/// How `--convert` rewrites objects of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conversion {
    /// Only apiVersion changes.
    Rename,
    /// apps/v1 workloads: a selector, and the old defaults made explicit.
    Workload,
    /// networking.k8s.io/v1 Ingress: the new backend shape and pathType.
    Ingress,
    /// policy/v1 PodDisruptionBudget: a rename, unless the selector is empty.
    Pdb,
    /// autoscaling/v2 from v2beta1: metric targets reshaped.
    HpaV2beta1,
    /// flowcontrol v1/v1beta3: assuredConcurrencyShares renamed, 0 made explicit.
    Flowcontrol,
    /// No mechanical conversion (the entry's `refusal` says why).
    None,
}

/// One removed group/version of some kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub api_version: String,
    pub kinds: Vec<String>,
    pub deprecated_in: Minor,
    pub removed_in: Minor,
    /// Newest first.
    pub replacements: Vec<Replacement>,
    pub changes: Vec<String>,
    pub conversion: Conversion,
    #[serde(default)]
    pub refusal: Option<String>,
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    api: Vec<Entry>,
}

/// The table's text, as shipped.
pub const TABLE_TOML: &str = include_str!("api-lifecycles.toml");

/// Parses a table (tests feed their own).
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    toml::from_str::<File>(text)
        .map(|f| f.api)
        .map_err(|e| e.to_string())
}

/// The embedded table, parsed once (a broken table fails the unit tests, never a user's run).
pub fn table() -> &'static [Entry] {
    static TABLE: OnceLock<Vec<Entry>> = OnceLock::new();
    TABLE.get_or_init(|| parse(TABLE_TOML).expect("the embedded API lifecycle table parses"))
}

/// The entry for an apiVersion and kind, if the table lists it.
pub fn find(api_version: &str, kind: &str) -> Option<&'static Entry> {
    table()
        .iter()
        .find(|e| e.api_version == api_version && e.kinds.iter().any(|k| k == kind))
}

/// The newest release the table knows of (the default target).
pub fn newest() -> Minor {
    table()
        .iter()
        .map(|e| e.removed_in)
        .max()
        .expect("the table has entries")
}

impl Entry {
    /// The changes that concern `kind`: a change written `Kind: ...` is about that kind only.
    pub fn changes_for(&self, kind: &str) -> Vec<String> {
        self.changes
            .iter()
            .filter(|c| match c.split_once(": ") {
                Some((k, _)) if self.kinds.iter().any(|x| x == k) => k == kind,
                _ => true,
            })
            .cloned()
            .collect()
    }

    /// The replacement to use at `target`: the newest that is served there and not itself removed.
    pub fn replacement_at(&self, kind: &str, target: Minor) -> Option<&Replacement> {
        self.replacements.iter().find(|r| {
            r.since <= target && find(&r.api_version, kind).is_none_or(|e| target < e.removed_in)
        })
    }

    /// The replacement to name in a verdict: the one served at `target`, else the newest.
    pub fn replacement_for(&self, kind: &str, target: Minor) -> Option<&Replacement> {
        self.replacement_at(kind, target)
            .or(self.replacements.first())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = "https://kubernetes.io/docs/reference/using-api/deprecation-guide/#";

    #[test]
    fn every_entry_cites_a_source_and_is_consistent() {
        let t = table();
        assert!(t.len() >= 30, "{} entries", t.len());
        for e in t {
            let what = format!("{} {:?}", e.api_version, e.kinds);
            let anchor = e
                .source
                .strip_prefix(GUIDE)
                .or_else(|| {
                    e.source.strip_prefix(
                        "https://github.com/kubernetes/kubernetes/blob/master/CHANGELOG/CHANGELOG-",
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: source {:?} is not the guide or a changelog",
                        e.source
                    )
                });
            assert!(!anchor.is_empty(), "{what}: the source names no section");
            // The section is the release that removes it (#…-v122 or #v1-22).
            let rel = format!("{}{}", e.removed_in.major, e.removed_in.minor);
            let rel_dash = format!("v{}-{}", e.removed_in.major, e.removed_in.minor);
            assert!(
                anchor.ends_with(&format!("v{rel}")) || anchor == rel_dash,
                "{what}: source section {anchor:?} is not the {} removal's",
                e.removed_in
            );
            assert!(e.deprecated_in < e.removed_in, "{what}");
            assert!(!e.kinds.is_empty(), "{what}");
            for r in &e.replacements {
                assert_ne!(r.api_version, e.api_version, "{what}");
            }
            // Newest first, and something is served by the time it goes.
            assert!(
                e.replacements.windows(2).all(|w| w[0].since >= w[1].since),
                "{what}: replacements not newest first"
            );
            if let Some(oldest) = e.replacements.last() {
                assert!(
                    oldest.since <= e.removed_in,
                    "{what}: no replacement served in {}",
                    e.removed_in
                );
            }
            match e.conversion {
                Conversion::None => assert!(
                    e.refusal.as_deref().is_some_and(|r| r.len() > 20),
                    "{what}: a refusal must say why"
                ),
                _ => {
                    assert!(e.refusal.is_none(), "{what}: converts and refuses");
                    assert!(!e.replacements.is_empty(), "{what}: converts to nothing");
                }
            }
        }
        // No (apiVersion, kind) twice.
        let mut seen = std::collections::HashSet::new();
        for e in t {
            for k in &e.kinds {
                assert!(
                    seen.insert((&e.api_version, k)),
                    "{} {k} twice",
                    e.api_version
                );
            }
        }
    }

    #[test]
    fn covers_every_release_of_the_guide_and_the_issue_list() {
        let releases: std::collections::BTreeSet<String> =
            table().iter().map(|e| e.removed_in.to_string()).collect();
        for r in ["1.16", "1.22", "1.25", "1.26", "1.27", "1.29", "1.32"] {
            assert!(releases.contains(r), "no removal in {r}");
        }
        for (gv, kind) in [
            ("extensions/v1beta1", "Deployment"),
            ("apps/v1beta1", "Deployment"),
            ("apps/v1beta2", "DaemonSet"),
            ("extensions/v1beta1", "Ingress"),
            ("networking.k8s.io/v1beta1", "Ingress"),
            ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"),
            ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
            (
                "admissionregistration.k8s.io/v1beta1",
                "ValidatingWebhookConfiguration",
            ),
            ("policy/v1beta1", "PodSecurityPolicy"),
            ("policy/v1beta1", "PodDisruptionBudget"),
            ("batch/v1beta1", "CronJob"),
            ("autoscaling/v2beta1", "HorizontalPodAutoscaler"),
            ("autoscaling/v2beta2", "HorizontalPodAutoscaler"),
            ("discovery.k8s.io/v1beta1", "EndpointSlice"),
            ("events.k8s.io/v1beta1", "Event"),
            ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"),
            ("flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema"),
            (
                "flowcontrol.apiserver.k8s.io/v1beta3",
                "PriorityLevelConfiguration",
            ),
            ("storage.k8s.io/v1beta1", "CSIStorageCapacity"),
        ] {
            assert!(find(gv, kind).is_some(), "{gv} {kind} missing");
        }
        assert_eq!(
            newest(),
            Minor {
                major: 1,
                minor: 32
            }
        );
    }

    #[test]
    fn a_table_without_a_source_does_not_parse() {
        let bad = r#"[[api]]
api_version = "x/v1beta1"
kinds = ["X"]
deprecated_in = "1.1"
removed_in = "1.2"
replacements = []
changes = []
conversion = "none"
refusal = "because"
"#;
        assert!(parse(bad).unwrap_err().contains("source"));
    }

    #[test]
    fn the_replacement_is_the_newest_served_at_the_target() {
        let fs = find("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema").unwrap();
        let at = |m| {
            fs.replacement_at("FlowSchema", Minor { major: 1, minor: m })
                .map(|r| r.api_version.as_str())
        };
        assert_eq!(at(30), Some("flowcontrol.apiserver.k8s.io/v1"));
        assert_eq!(at(27), Some("flowcontrol.apiserver.k8s.io/v1beta3"));
        assert_eq!(at(24), Some("flowcontrol.apiserver.k8s.io/v1beta2"));
        assert_eq!(at(22), None);
        // extensions PSP → policy/v1beta1 only while policy/v1beta1 is served.
        let psp = find("extensions/v1beta1", "PodSecurityPolicy").unwrap();
        let m = |minor| Minor { major: 1, minor };
        assert!(psp.replacement_at("PodSecurityPolicy", m(20)).is_some());
        assert!(psp.replacement_at("PodSecurityPolicy", m(25)).is_none());
    }
}
