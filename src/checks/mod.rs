//! Every check area in one list, [`AREAS`]. An area is one module here (`checks/NAME.rs`, or a
//! directory when it is big) exporting `pub const AREA: Area`: its checks, each naming the sources
//! it reads, and the planners of the fixable ones. Adding an area is that file plus its name in the
//! `areas!` line below; tests prove every catalog entry is implemented exactly once.

use crate::{core::check::CheckDef, fix::plan::Fix};

pub mod init;
pub mod kubelet;
pub mod runtime_config;
pub mod stage;

/// One area: its checks and the fixes of those `k8sdoctor fix` can repair.
pub struct Area {
    pub checks: &'static [CheckDef],
    pub fixes: &'static [Fix],
}

/// Declares each area's module and lists it in [`AREAS`], so the name is written once.
macro_rules! areas {
    ($($area:ident),* $(,)?) => {
        $(pub mod $area;)*
        /// Every area, each once.
        pub const AREAS: &[&Area] = &[$(&$area::AREA),*];
    };
}

areas![
    binaries,
    cgroup,
    cgroup_driver,
    cluster,
    cri,
    dns,
    firewall,
    hostname,
    ipv6,
    kconfig,
    kubeconfig_perms,
    kubelet_service,
    leftover,
    ports,
    proxy,
    proxy_env,
    resources,
    selinux,
    swap,
    sysctl,
];

/// Every implemented host check.
pub fn registry() -> impl Iterator<Item = &'static CheckDef> {
    AREAS.iter().flat_map(|a| a.checks)
}

/// The fix of a check, when it has one.
pub fn fix(id: &str) -> Option<&'static Fix> {
    AREAS.iter().flat_map(|a| a.fixes).find(|f| f.check == id)
}

/// Every fix.
pub fn fixes() -> impl Iterator<Item = &'static Fix> {
    AREAS.iter().flat_map(|a| a.fixes)
}

/// What the planners' tests share: files as read, and running one planner.
#[cfg(test)]
pub(crate) mod fix_test {
    use crate::{
        core::{check::Status, source::Facts},
        fix::plan::{CheckFix, Content, Files},
    };

    /// Every path a planner may edit absent, but those given.
    pub fn files(entries: &[(&str, Content)]) -> Files {
        let mut f = Files::default();
        for p in super::fixes().flat_map(|x| (x.edits)(&Facts::default())) {
            f.insert(&p, Ok(Content::Absent));
        }
        for (p, c) in entries {
            f.insert(p, Ok(c.clone()));
        }
        f
    }

    pub fn plan(
        p: fn(&Facts, &Files, &mut CheckFix) -> Result<(), String>,
        facts: &Facts,
        files: &Files,
    ) -> CheckFix {
        let mut fix = CheckFix::new("x", Status::Fail, "");
        p(facts, files, &mut fix).unwrap();
        fix
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::catalog;

    /// Host checks come from the registry; join-check's steps (`join::STEPS`) and the result of
    /// `k8sdoctor manifests` are catalog entries that `check` never selects. Together they are exactly
    /// the catalog, each id once.
    #[test]
    fn every_catalog_id_is_registered_exactly_once() {
        let mut implemented: Vec<&str> = registry().map(|c| c.id).collect();
        implemented.extend_from_slice(crate::join::STEPS);
        implemented.push(crate::manifests::verdict::ID);
        implemented.sort();
        let before = implemented.len();
        implemented.dedup();
        assert_eq!(
            before,
            implemented.len(),
            "duplicate check ids in the registry or join steps"
        );
        let cataloged: Vec<&str> = catalog::catalog().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(implemented, cataloged);
        assert!(
            registry().all(|c| !c.id.starts_with("join.")),
            "join.* ids are join-check steps, not host checks"
        );
        assert!(
            registry().all(|c| !c.id.starts_with("manifests.")),
            "manifests.* is the result of `k8sdoctor manifests`, not a host check"
        );
        assert_eq!(
            catalog::find(crate::manifests::verdict::ID).map(|e| e.title.as_str()),
            Some(crate::manifests::verdict::TITLE),
            "a manifests result carries its catalog entry's title"
        );
        assert!(
            registry().all(|c| !c.needs.is_empty()),
            "every check reads a source"
        );
    }

    /// A source name is its key in the facts: two sources with one name would read each other's values.
    #[test]
    fn source_names_are_unique() {
        let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
        for s in registry().flat_map(|c| c.needs) {
            let addr = s.gather_addr();
            let prev = by_name.insert(s.name(), addr);
            assert!(
                prev.is_none_or(|p| p == addr),
                "two sources are named {:?}",
                s.name()
            );
        }
        assert!(by_name.len() >= 7, "{by_name:?}");
    }

    /// `fix = true` in a catalog entry exactly when a planner for it is registered (once, with its check).
    #[test]
    fn fix_in_the_catalog_matches_a_registered_planner() {
        for e in catalog::catalog() {
            assert_eq!(
                e.fix,
                fix(&e.id).is_some(),
                "{}: `fix = {}` in checks/{}.toml",
                e.id,
                e.fix,
                e.id
            );
        }
        for a in AREAS {
            for f in a.fixes {
                assert!(
                    a.checks.iter().any(|c| c.id == f.check),
                    "the fix of {} sits in another area than its check",
                    f.check
                );
                assert_eq!(fixes().filter(|x| x.check == f.check).count(), 1);
            }
        }
    }
}
