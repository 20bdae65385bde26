//! `cgroup.version`: which cgroup hierarchy the node runs (from /proc/mounts, else the tree itself) and
//! whether the controllers the kubelet needs are there — read from the tree, never by creating a cgroup.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::{Fact, FactError},
    core::host::Host,
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "cgroup.version",
            needs: &[&CGROUPS],
            run: |f, _| Ok(decide(f.get(&CGROUPS)?)),
        },
    ],
    fixes: &[],
};

/// The cgroup hierarchy and its controllers.
pub const CGROUPS: Source<CgroupFacts> = Source::files("cgroups", |g| gather(g.host));

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// What system-validators requires on cgroup v2 (devices is implicit in the kernel, freezer is `cgroup.freeze`).
pub const REQUIRED_V2: &[&str] = &["cpu", "cpuset", "devices", "freezer", "memory", "pids"];
/// What it requires on cgroup v1 (/proc/cgroups).
pub const REQUIRED_V1: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup2 mounted at /sys/fs/cgroup.
    V2,
    /// v1 controllers at /sys/fs/cgroup/*; `hybrid` when a cgroup2 tree also sits at .../unified.
    V1 { hybrid: bool },
}

/// The hierarchy from /proc/mounts text, and the line that shows it.
pub fn hierarchy_from_mounts(text: &str) -> Option<(Hierarchy, String)> {
    let mut v1 = None;
    let mut unified = false;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (Some(point), Some(kind)) = (f.get(1), f.get(2)) else {
            continue;
        };
        match *kind {
            "cgroup2" if *point == CGROUP_ROOT => {
                return Some((Hierarchy::V2, format!("/proc/mounts: {}", l.trim())));
            }
            "cgroup2" => unified = true,
            "cgroup" if v1.is_none() && point.starts_with(CGROUP_ROOT) => {
                v1 = Some(format!("/proc/mounts: {}", l.trim()));
            }
            _ => {}
        }
    }
    v1.map(|l| (Hierarchy::V1 { hybrid: unified }, l))
}

/// Controllers enabled in /proc/cgroups (v1): rows whose `enabled` column is not 0.
pub fn parse_proc_cgroups(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] != "0").then(|| f[0].to_string())
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFacts {
    pub hierarchy: Hierarchy,
    /// The line or file that tells the hierarchy.
    pub how: String,
    /// Available controllers (v2: cgroup.controllers plus the implicit ones found; v1: /proc/cgroups).
    pub controllers: Vec<String>,
    /// v2: the root's cgroup.subtree_control, when readable.
    pub subtree_control: Option<Vec<String>>,
    /// v2: a child cgroup that has `cgroup.freeze` (the freezer of kernels ≥ 5.2), when one was found.
    pub freeze_file: Option<String>,
}

pub fn gather(host: &Host) -> Fact<CgroupFacts> {
    let mounts = host.read_opt("/proc/mounts")?;
    let found = mounts.as_deref().and_then(hierarchy_from_mounts);
    let controllers_file = format!("{CGROUP_ROOT}/cgroup.controllers");
    let (hierarchy, how) = match found {
        Some(h) => h,
        None if host.exists(&controllers_file) => {
            (Hierarchy::V2, format!("{controllers_file}: exists"))
        }
        None if host.exists(&format!("{CGROUP_ROOT}/memory")) => (
            Hierarchy::V1 { hybrid: false },
            format!("{CGROUP_ROOT}/memory: a v1 controller directory"),
        ),
        None => {
            return Err(FactError::Missing(format!(
                "no cgroup hierarchy here: neither /proc/mounts nor {CGROUP_ROOT} tells one"
            )));
        }
    };
    let words = |t: String| t.split_whitespace().map(String::from).collect::<Vec<_>>();
    match hierarchy {
        Hierarchy::V2 => {
            let mut controllers = words(host.read(&controllers_file)?);
            let freeze_file = host
                .list_dir(CGROUP_ROOT)?
                .into_iter()
                .map(|n| format!("{CGROUP_ROOT}/{n}/cgroup.freeze"))
                .find(|p| host.exists(p));
            // devices is implemented by the kernel itself on v2 (BPF); system-validators assumes it too.
            controllers.push("devices".into());
            if freeze_file.is_some() {
                controllers.push("freezer".into());
            }
            Ok(CgroupFacts {
                hierarchy,
                how,
                controllers,
                subtree_control: host
                    .read_opt(&format!("{CGROUP_ROOT}/cgroup.subtree_control"))?
                    .map(words),
                freeze_file,
            })
        }
        Hierarchy::V1 { .. } => Ok(CgroupFacts {
            hierarchy,
            how,
            controllers: parse_proc_cgroups(&host.read("/proc/cgroups")?),
            subtree_control: None,
            freeze_file: None,
        }),
    }
}

pub fn decide(c: &CgroupFacts) -> Finding {
    let (required, name, source) = match c.hierarchy {
        Hierarchy::V2 => (REQUIRED_V2, "v2", "cgroup.controllers"),
        Hierarchy::V1 { .. } => (REQUIRED_V1, "v1", "/proc/cgroups"),
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !c.controllers.iter().any(|x| x == r))
        .collect();
    let mut ev = vec![
        c.how.clone(),
        format!("{source}: {}", c.controllers.join(" ")),
    ];
    if let Some(s) = &c.subtree_control {
        ev.push(format!(
            "{CGROUP_ROOT}/cgroup.subtree_control: {}",
            s.join(" ")
        ));
    }
    if c.hierarchy == Hierarchy::V2 {
        ev.push(match &c.freeze_file {
            Some(f) => format!("{f}: exists (freezer)"),
            None => format!(
                "{CGROUP_ROOT}/*/cgroup.freeze: none found (no freezer, or no child cgroup yet)"
            ),
        });
    }
    if !missing.is_empty() {
        // Without any child cgroup the freezer cannot be seen from outside: do not call it missing.
        let only_unseen_freezer =
            missing == ["freezer"] && c.hierarchy == Hierarchy::V2 && c.freeze_file.is_none();
        if !only_unseen_freezer {
            return Finding::fail(format!(
                "cgroup {name} lacks controller(s) the kubelet needs: {}; kubeadm's SystemVerification fails with \"missing required cgroups: {}\"",
                missing.join(", "),
                missing.join(" ")
            ))
            .evidence_all(ev)
            .remediation(
                "enable them on the kernel command line (e.g. cgroup_enable=memory for memory on Raspberry Pi kernels, systemd.unified_cgroup_hierarchy=1) and reboot; in a container, run it with the host's cgroup controllers delegated",
            );
        }
    }
    match c.hierarchy {
        Hierarchy::V2 => Finding::pass("cgroup v2 with every controller the kubelet needs").evidence_all(ev),
        Hierarchy::V1 { hybrid } => Finding::warn(format!(
            "cgroup v1{}: in maintenance mode since Kubernetes 1.31, and kubelet 1.35+ refuses to start on it unless failCgroupV1: false",
            if hybrid { " (hybrid: the v2 tree at /sys/fs/cgroup/unified has no controllers)" } else { "" }
        ))
        .evidence_all(ev)
        .remediation(
            "move to cgroup v2: boot with systemd.unified_cgroup_hierarchy=1 (e.g. `grubby --update-kernel=ALL --args=systemd.unified_cgroup_hierarchy=1`, or GRUB_CMDLINE_LINUX in /etc/default/grub then update-grub) and reboot; needs systemd ≥ 244 and kernel ≥ 5.8",
        ),
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    const MOUNTS_V2: &str = "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n";
    // CentOS 7: tmpfs at /sys/fs/cgroup and one cgroup mount per controller.
    const MOUNTS_V1: &str = "tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0\ncgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n";
    const MOUNTS_HYBRID: &str = "tmpfs /sys/fs/cgroup tmpfs ro 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\ncgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n";
    const PROC_CGROUPS: &str = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t4\t1\t1\ncpu\t2\t62\t1\ncpuacct\t2\t62\t1\nmemory\t0\t1\t0\ndevices\t7\t62\t1\nfreezer\t3\t1\t1\npids\t5\t62\t1\n";

    #[test]
    fn mounts_tell_v2_v1_and_hybrid() {
        assert_eq!(hierarchy_from_mounts(MOUNTS_V2).unwrap().0, Hierarchy::V2);
        let (h, how) = hierarchy_from_mounts(MOUNTS_V1).unwrap();
        assert_eq!(h, Hierarchy::V1 { hybrid: false });
        assert!(how.contains("/sys/fs/cgroup/systemd"));
        assert_eq!(
            hierarchy_from_mounts(MOUNTS_HYBRID).unwrap().0,
            Hierarchy::V1 { hybrid: true }
        );
        assert_eq!(hierarchy_from_mounts("proc /proc proc rw 0 0\n"), None);
        assert_eq!(
            parse_proc_cgroups(PROC_CGROUPS),
            ["cpuset", "cpu", "cpuacct", "devices", "freezer", "pids"]
        );
    }

    fn v2(controllers: &str, freeze: bool) -> CgroupFacts {
        let mut c: Vec<String> = controllers.split_whitespace().map(String::from).collect();
        c.push("devices".into());
        if freeze {
            c.push("freezer".into());
        }
        CgroupFacts {
            hierarchy: Hierarchy::V2,
            how: "x".into(),
            controllers: c,
            subtree_control: Some(vec!["cpu".into(), "memory".into()]),
            freeze_file: freeze.then(|| "/sys/fs/cgroup/init.scope/cgroup.freeze".into()),
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(
            decide(&v2("cpuset cpu io memory hugetlb pids rdma misc", true)).status,
            Status::Pass
        );
        let f = decide(&v2("cpuset cpu io hugetlb pids", true));
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("missing required cgroups: memory"),
            "{}",
            f.message
        );
        // No child cgroup to look at: the freezer is not called missing.
        assert_eq!(
            decide(&v2("cpuset cpu memory pids", false)).status,
            Status::Pass
        );
        let v1 = CgroupFacts {
            hierarchy: Hierarchy::V1 { hybrid: false },
            how: "x".into(),
            controllers: parse_proc_cgroups(PROC_CGROUPS),
            subtree_control: None,
            freeze_file: None,
        };
        let f = decide(&v1);
        assert_eq!(
            f.status,
            Status::Fail,
            "memory is disabled in that /proc/cgroups"
        );
        let mut ok = v1.clone();
        ok.controllers.push("memory".into());
        let f = decide(&ok);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("1.35"));
    }
}
