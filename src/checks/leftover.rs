//! `kubeadm.leftover-state`: what an earlier cluster left behind that makes `kubeadm init`/`join` refuse
//! (static pod manifests, kubeconfigs, the CA, a non-empty etcd data dir) or misbehave (old CNI configs).

use super::{Area, stage::STAGE};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::Fact,
    core::host::Host,
};

use crate::core::stage::Stage;


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "kubeadm.leftover-state",
            needs: &[&LEFTOVERS, &STAGE],
            run: |f, _| Ok(decide(f.get(&LEFTOVERS)?, *f.get(&STAGE)?)),
        },
    ],
    fixes: &[],
};

/// What an earlier cluster left in /etc/kubernetes, /var/lib/etcd and /etc/cni/net.d.
pub const LEFTOVERS: Source<LeftoverFacts> = Source::files("kubeadm-leftovers", |g| gather(g.host));

/// A file kubeadm's `FileAvailable-*` checks want absent, and the stages it matters before.
struct Leftover {
    path: &'static str,
    before_init: bool,
    before_join: bool,
}

const FILES: &[Leftover] = &[
    Leftover {
        path: "/etc/kubernetes/manifests/kube-apiserver.yaml",
        before_init: true,
        before_join: true,
    },
    Leftover {
        path: "/etc/kubernetes/manifests/kube-controller-manager.yaml",
        before_init: true,
        before_join: true,
    },
    Leftover {
        path: "/etc/kubernetes/manifests/kube-scheduler.yaml",
        before_init: true,
        before_join: true,
    },
    Leftover {
        path: "/etc/kubernetes/manifests/etcd.yaml",
        before_init: true,
        before_join: true,
    },
    Leftover {
        path: "/etc/kubernetes/kubelet.conf",
        before_init: true,
        before_join: true,
    },
    Leftover {
        path: "/etc/kubernetes/bootstrap-kubelet.conf",
        before_init: true,
        before_join: true,
    },
    // Before init a ca.crt may be the operator's own CA (kubeadm uses it); before join it is a leftover.
    Leftover {
        path: "/etc/kubernetes/pki/ca.crt",
        before_init: false,
        before_join: true,
    },
];

pub const ETCD_DIR: &str = "/var/lib/etcd";
pub const CNI_DIR: &str = "/etc/cni/net.d";

/// kubeadm's name for a path check: `/` becomes `-` (`FileAvailable--etc-kubernetes-kubelet.conf`).
pub fn kubeadm_name(kind: &str, path: &str) -> String {
    format!("{kind}-{}", path.replace('/', "-"))
}

/// Whether a file name in /etc/cni/net.d is a config the container runtime would load.
pub fn is_cni_config(name: &str) -> bool {
    [".conf", ".conflist", ".json"]
        .iter()
        .any(|s| name.ends_with(s))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftoverFacts {
    /// The kubeadm files that exist.
    pub files: Vec<String>,
    /// Entries of /var/lib/etcd (empty when absent).
    pub etcd_entries: Vec<String>,
    /// CNI configs in /etc/cni/net.d.
    pub cni_configs: Vec<String>,
}

pub fn gather(host: &Host) -> Fact<LeftoverFacts> {
    Ok(LeftoverFacts {
        files: FILES
            .iter()
            .filter(|f| host.exists(f.path))
            .map(|f| f.path.to_string())
            .collect(),
        etcd_entries: host.list_dir(ETCD_DIR)?,
        cni_configs: host
            .list_dir(CNI_DIR)?
            .into_iter()
            .filter(|n| is_cni_config(n))
            .collect(),
    })
}

pub fn decide(l: &LeftoverFacts, stage: Stage) -> Finding {
    if stage == Stage::Installed {
        return Finding::skip(
            "installed node (/etc/kubernetes/kubelet.conf exists): these files are the cluster's own; use --stage pre-init or pre-join before a fresh install",
        );
    }
    let mut ev = Vec::new();
    let mut kubeadm = Vec::new();
    for f in FILES {
        let matters = match stage {
            Stage::PreInit => f.before_init,
            _ => f.before_join,
        };
        if matters && l.files.iter().any(|p| p == f.path) {
            ev.push(format!("{}: exists", f.path));
            kubeadm.push(format!("[ERROR {}]", kubeadm_name("FileAvailable", f.path)));
        }
    }
    if stage == Stage::PreInit && !l.etcd_entries.is_empty() {
        ev.push(format!(
            "{ETCD_DIR}: not empty ({})",
            l.etcd_entries.join(", ")
        ));
        kubeadm.push(format!(
            "[ERROR {}]",
            kubeadm_name("DirAvailable", ETCD_DIR)
        ));
    }
    let cni = !l.cni_configs.is_empty();
    if cni {
        ev.push(format!(
            "{CNI_DIR}: {} (kubeadm reset leaves these; the runtime loads the first by name)",
            l.cni_configs.join(", ")
        ));
    }
    if ev.is_empty() {
        return Finding::pass(format!(
            "no state of an earlier cluster is left before {}",
            if stage == Stage::PreInit {
                "kubeadm init"
            } else {
                "kubeadm join"
            }
        ))
        .evidence("/etc/kubernetes: no manifests, kubeconfigs or CA left")
        .evidence(format!("{ETCD_DIR}: empty or absent; {CNI_DIR}: no config"));
    }
    let mut msg = format!("an earlier cluster left {} item(s) behind", ev.len());
    if !kubeadm.is_empty() {
        msg.push_str(&format!(
            "; kubeadm's preflight fails with {}",
            kubeadm.join(" ")
        ));
    }
    if cni {
        msg.push_str("; old CNI configs make new pods use the old network");
    }
    Finding::fail(msg).evidence_all(ev).remediation(format!(
        "run `kubeadm reset -f`, then remove what it leaves: `rm -rf {CNI_DIR}/* {ETCD_DIR}` (and the old CNI's interfaces, e.g. `ip link delete cni0`)"
    ))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    fn facts(files: &[&str], etcd: &[&str], cni: &[&str]) -> LeftoverFacts {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        LeftoverFacts {
            files: s(files),
            etcd_entries: s(etcd),
            cni_configs: s(cni),
        }
    }

    #[test]
    fn names_follow_kubeadm() {
        assert_eq!(
            kubeadm_name("FileAvailable", "/etc/kubernetes/manifests/etcd.yaml"),
            "FileAvailable--etc-kubernetes-manifests-etcd.yaml"
        );
        assert_eq!(
            kubeadm_name("DirAvailable", ETCD_DIR),
            "DirAvailable--var-lib-etcd"
        );
        assert!(is_cni_config("10-weave.conflist") && !is_cni_config("README"));
    }

    #[test]
    fn leftovers_fail_before_install_and_skip_after() {
        let l = facts(
            &[
                "/etc/kubernetes/manifests/etcd.yaml",
                "/etc/kubernetes/pki/ca.crt",
            ],
            &["member"],
            &["10-weave.conflist"],
        );
        let f = decide(&l, Stage::PreInit);
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message
                .contains("[ERROR FileAvailable--etc-kubernetes-manifests-etcd.yaml]")
        );
        assert!(f.message.contains("[ERROR DirAvailable--var-lib-etcd]"));
        assert!(
            !f.message.contains("ca.crt"),
            "an own CA before init is fine: {}",
            f.message
        );
        assert_eq!(f.evidence.len(), 3);
        let f = decide(&l, Stage::PreJoin);
        assert!(f.message.contains("pki-ca.crt"), "{}", f.message);
        assert!(
            !f.message.contains("DirAvailable"),
            "join does not look at etcd"
        );
        assert_eq!(decide(&l, Stage::Installed).status, Status::Skip);
        let clean = facts(&[], &[], &[]);
        assert_eq!(decide(&clean, Stage::PreJoin).status, Status::Pass);
        let f = decide(
            &facts(&[], &[], &["87-podman-bridge.conflist"]),
            Stage::PreJoin,
        );
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("old CNI"));
    }
}
