//! The install stage a node is at (`--stage`): before `kubeadm init`, before `kubeadm join`, or installed.

use serde::Serialize;

use super::status::Role;

/// Where a node stands in its kubeadm life: checks that only make sense on one side skip on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Before `kubeadm init`: a control plane to be.
    PreInit,
    /// Before `kubeadm join`: a worker to be.
    PreJoin,
    /// `kubeadm init` or `join` has run: `/etc/kubernetes/kubelet.conf` exists.
    Installed,
}

/// `--stage`: a fixed stage, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StageChoice {
    #[default]
    Auto,
    Fixed(Stage),
}

/// The file whose presence means "installed": kubeadm writes it at the end of init and join.
pub const KUBELET_CONF: &str = "/etc/kubernetes/kubelet.conf";

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::PreInit => "pre-init",
            Stage::PreJoin => "pre-join",
            Stage::Installed => "installed",
        }
    }

    /// `auto`: installed when kubelet.conf exists, else pre-init for a control plane and pre-join for a worker.
    pub fn resolve(choice: StageChoice, kubelet_conf_exists: bool, role: Role) -> Stage {
        match choice {
            StageChoice::Fixed(s) => s,
            StageChoice::Auto if kubelet_conf_exists => Stage::Installed,
            StageChoice::Auto => match role {
                Role::ControlPlane => Stage::PreInit,
                Role::Worker => Stage::PreJoin,
            },
        }
    }

    pub fn is_pre_install(self) -> bool {
        self != Stage::Installed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_installed_with_kubelet_conf_and_otherwise_follows_the_role() {
        let auto = StageChoice::Auto;
        assert_eq!(Stage::resolve(auto, true, Role::Worker), Stage::Installed);
        assert_eq!(
            Stage::resolve(auto, false, Role::ControlPlane),
            Stage::PreInit
        );
        assert_eq!(Stage::resolve(auto, false, Role::Worker), Stage::PreJoin);
        let fixed = StageChoice::Fixed(Stage::PreInit);
        assert_eq!(Stage::resolve(fixed, true, Role::Worker), Stage::PreInit);
        assert!(!Stage::Installed.is_pre_install() && Stage::PreJoin.is_pre_install());
    }
}
