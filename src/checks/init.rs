//! Which init system the node boots with (systemd, OpenRC, something else), so boot-time advice names
//! what applies there instead of assuming systemd.

use crate::core::host::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitSystem {
    Systemd,
    OpenRc,
    /// Neither: the name PID 1 goes by.
    Other(String),
    /// Nothing under the root tells (no /run/systemd/system, /sbin/init, /sbin/openrc).
    Unknown,
}

impl InitSystem {
    /// The live host: PID 1's name. A root: systemd's runtime dir, else the init binaries it ships.
    pub fn detect(host: &Host) -> InitSystem {
        let comm = host
            .is_live()
            .then(|| host.read_opt("/proc/1/comm").ok().flatten())
            .flatten()
            .map(|c| c.trim().to_string());
        match comm.as_deref() {
            Some("systemd") => return InitSystem::Systemd,
            Some("openrc-init") => return InitSystem::OpenRc,
            // In a container PID 1 is the entrypoint: fall through to what the files say.
            _ => {}
        }
        let init_link = host
            .link_target("/sbin/init")
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
        if host.exists("/run/systemd/system") || init_link.contains("systemd") {
            InitSystem::Systemd
        } else if host.exists("/sbin/openrc") || host.exists("/etc/runlevels") {
            InitSystem::OpenRc
        } else {
            match comm {
                Some(c) => InitSystem::Other(c),
                None => InitSystem::Unknown,
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            InitSystem::Systemd => "systemd".into(),
            InitSystem::OpenRc => "OpenRC".into(),
            InitSystem::Other(n) => n.clone(),
            InitSystem::Unknown => "an unknown init system".into(),
        }
    }

    /// Who applies /etc/sysctl.d at boot, in words for a remediation.
    pub fn sysctl_at_boot(&self) -> String {
        match self {
            InitSystem::Systemd => "systemd-sysctl applies /etc/sysctl.d at boot".into(),
            InitSystem::OpenRc => "OpenRC's sysctl service applies /etc/sysctl.d at boot (`rc-update add sysctl boot`)".into(),
            InitSystem::Other(n) => format!(
                "PID 1 is {n}, not systemd: make its boot scripts run `sysctl --system` so /etc/sysctl.d is applied"
            ),
            InitSystem::Unknown => "/etc/sysctl.d is applied at boot by systemd-sysctl, or by `sysctl --system` in the boot scripts of other init systems".into(),
        }
    }

    /// Who loads /etc/modules-load.d at boot.
    pub fn modules_at_boot(&self) -> String {
        match self {
            InitSystem::Systemd => "systemd-modules-load reads /etc/modules-load.d at boot".into(),
            InitSystem::OpenRc => "OpenRC's modules service reads /etc/modules-load.d at boot (`rc-update add modules boot`)".into(),
            InitSystem::Other(n) => format!(
                "PID 1 is {n}, not systemd: make its boot scripts `modprobe` the module"
            ),
            InitSystem::Unknown => "systemd-modules-load (or OpenRC's modules service) reads /etc/modules-load.d at boot".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_from_a_root() {
        let d = tempfile::tempdir().unwrap();
        let host = Host::new(d.path()).unwrap();
        assert_eq!(InitSystem::detect(&host), InitSystem::Unknown);
        std::fs::create_dir_all(d.path().join("etc/runlevels/default")).unwrap();
        assert_eq!(InitSystem::detect(&host), InitSystem::OpenRc);
        std::fs::create_dir_all(d.path().join("sbin")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", d.path().join("sbin/init")).unwrap();
        assert_eq!(InitSystem::detect(&host), InitSystem::Systemd);
        assert!(
            InitSystem::Other("runit".into())
                .sysctl_at_boot()
                .contains("runit")
        );
    }
}
