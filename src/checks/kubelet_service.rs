//! `kubelet.service`: the kubelet is enabled at boot — systemd wants/requires links (and no mask) under the
//! root, or an OpenRC runlevel link — without asking systemctl, so it works under `--root` too.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
};

use super::init::InitSystem;


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "kubelet.service",
            needs: &[&KUBELET_UNIT],
            run: |f, _| Ok(decide(f.get(&KUBELET_UNIT)?)),
        },
    ],
    fixes: &[],
};

/// How the kubelet is enabled at boot.
pub const KUBELET_UNIT: Source<KubeletServiceFacts> = Source::files("kubelet-unit", |g| gather(g.host));

pub const UNIT: &str = "kubelet.service";
const SYSTEMD_ETC: &str = "/etc/systemd/system";
/// Where unit files live, highest precedence first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletServiceFacts {
    pub init: InitSystem,
    /// Where the unit (or OpenRC script) is.
    pub unit_file: Option<String>,
    /// A mask: the unit file links to /dev/null.
    pub masked: Option<String>,
    /// Links that enable it: `.../multi-user.target.wants/kubelet.service`, `/etc/runlevels/default/kubelet`.
    pub enabled_by: Vec<String>,
}

pub fn gather(host: &Host) -> Fact<KubeletServiceFacts> {
    let init = InitSystem::detect(host);
    let mut f = KubeletServiceFacts {
        init: init.clone(),
        unit_file: None,
        masked: None,
        enabled_by: Vec::new(),
    };
    match init {
        InitSystem::OpenRc => {
            f.unit_file = host
                .exists("/etc/init.d/kubelet")
                .then(|| "/etc/init.d/kubelet".into());
            for level in host.list_dir("/etc/runlevels")? {
                let p = format!("/etc/runlevels/{level}/kubelet");
                if host.exists(&p) || host.link_target(&p).is_some() {
                    f.enabled_by.push(p);
                }
            }
        }
        _ => {
            for d in UNIT_DIRS {
                let p = format!("{d}/{UNIT}");
                if host
                    .link_target(&p)
                    .is_some_and(|t| t == std::path::Path::new("/dev/null"))
                {
                    f.masked.get_or_insert(p);
                } else if f.unit_file.is_none() && host.exists(&p) {
                    f.unit_file = Some(p);
                }
            }
            for d in [SYSTEMD_ETC, "/run/systemd/system"] {
                for dir in host.list_dir(d)? {
                    if dir.ends_with(".wants") || dir.ends_with(".requires") {
                        let p = format!("{d}/{dir}/{UNIT}");
                        if host.link_target(&p).is_some() || host.exists(&p) {
                            f.enabled_by.push(p);
                        }
                    }
                }
            }
        }
    }
    Ok(f)
}

pub fn decide(k: &KubeletServiceFacts) -> Finding {
    match &k.init {
        InitSystem::Other(n) => {
            return Finding::skip(format!(
                "PID 1 is {n}, neither systemd nor OpenRC: enable the kubelet with that init system (kubeadm skips Service-Kubelet there too)"
            ));
        }
        InitSystem::Unknown => {
            return Finding::skip(
                "the init system is unknown under this root (no /run/systemd/system, /sbin/init or /sbin/openrc)",
            );
        }
        _ => {}
    }
    let mut ev = Vec::new();
    if let Some(m) = &k.masked {
        return Finding::warn(format!(
            "{UNIT} is masked: it never starts, so the node never joins"
        ))
        .evidence(format!("{m} -> /dev/null"))
        .remediation(format!(
            "systemctl unmask {UNIT} && systemctl enable --now kubelet"
        ));
    }
    let Some(unit) = &k.unit_file else {
        return Finding::warn(
            "the kubelet service does not exist: the kubelet package is not installed ([WARNING Service-Kubelet])",
        )
        .evidence(match k.init {
            InitSystem::OpenRc => "/etc/init.d/kubelet: does not exist".to_string(),
            _ => format!("{UNIT}: in none of {}", UNIT_DIRS.join(", ")),
        })
        .remediation("install kubelet from pkgs.k8s.io (apt-get install kubelet / dnf install kubelet), then `systemctl enable kubelet`");
    };
    ev.push(format!("{unit}: exists"));
    if k.enabled_by.is_empty() {
        let cmd = match k.init {
            InitSystem::OpenRc => "rc-update add kubelet default",
            _ => "systemctl enable kubelet",
        };
        return Finding::warn(format!(
            "the kubelet is not enabled at boot: after a reboot the node stays NotReady; kubeadm warns [WARNING Service-Kubelet]: kubelet service is not enabled, please run '{cmd}'"
        ))
        .evidence_all(ev)
        .evidence(match k.init {
            InitSystem::OpenRc => "/etc/runlevels/*/kubelet: none".to_string(),
            _ => format!("{SYSTEMD_ETC}/*.wants/{UNIT}: none"),
        })
        .remediation(cmd);
    }
    ev.extend(k.enabled_by.iter().map(|e| format!("{e}: enables it")));
    Finding::pass(format!(
        "the kubelet is enabled at boot ({})",
        k.init.name()
    ))
    .evidence_all(ev)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_wants_links_and_masks_under_a_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("run/systemd/system")).unwrap();
        std::fs::create_dir_all(r.join("lib/systemd/system")).unwrap();
        std::fs::create_dir_all(r.join("etc/systemd/system/multi-user.target.wants")).unwrap();
        let host = Host::new(r).unwrap();
        let f = decide(&gather(&host).unwrap());
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("does not exist"), "{}", f.message);
        std::fs::write(r.join("lib/systemd/system/kubelet.service"), "[Unit]\n").unwrap();
        let f = decide(&gather(&host).unwrap());
        assert!(f.message.contains("not enabled"), "{}", f.message);
        symlink(
            "/lib/systemd/system/kubelet.service",
            r.join("etc/systemd/system/multi-user.target.wants/kubelet.service"),
        )
        .unwrap();
        let facts = gather(&host).unwrap();
        assert_eq!(facts.init, InitSystem::Systemd);
        assert_eq!(
            decide(&facts).status,
            Status::Pass,
            "an absolute link counts even if it dangles outside the root"
        );
        symlink("/dev/null", r.join("etc/systemd/system/kubelet.service")).unwrap();
        let f = decide(&gather(&host).unwrap());
        assert!(f.message.contains("masked"), "{}", f.message);
    }

    #[test]
    fn openrc_runlevels_and_other_inits() {
        let k = KubeletServiceFacts {
            init: InitSystem::OpenRc,
            unit_file: Some("/etc/init.d/kubelet".into()),
            masked: None,
            enabled_by: vec![],
        };
        assert!(
            decide(&k)
                .remediation
                .unwrap()
                .contains("rc-update add kubelet default")
        );
        let k = KubeletServiceFacts {
            init: InitSystem::Other("runit".into()),
            ..k
        };
        assert_eq!(decide(&k).status, Status::Skip);
    }
}
