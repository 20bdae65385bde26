//! `runtime.cgroup-driver`: the kubelet's `cgroupDriver` (or, before install, the systemd kubeadm writes)
//! against the runtime's own setting: containerd `SystemdCgroup`, CRI-O `cgroup_manager`, Docker's
//! `native.cgroupdriver` for cri-dockerd.

use super::{Area};
use crate::core::{check::CheckDef, source::Source};
use crate::{
    core::check::Finding,
    core::facts::{Fact, FactError},
    core::host::Host,
    checks::kubelet,
};

use super::{
    cri,
    runtime_config::{self, Driver, RuntimeDriver},
};


pub const AREA: Area = Area {
    checks: &[
        CheckDef {
            id: "runtime.cgroup-driver",
            needs: &[&CGROUP_DRIVERS],
            run: |f, _| decide(f.get(&CGROUP_DRIVERS)?),
        },
    ],
    fixes: &[],
};

/// The kubelet's cgroup driver and the runtime's.
pub const CGROUP_DRIVERS: Source<DriverFacts> = Source::files("cgroup-drivers", |g| gather(g.host));

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverFacts {
    /// The kubelet's driver and where it comes from.
    pub kubelet: (Driver, String),
    /// The runtime the kubelet uses (by its socket), or None when none was found.
    pub runtime: Option<(String, Result<RuntimeDriver, String>)>,
}

fn crio_files(host: &Host) -> Result<Vec<(String, String)>, FactError> {
    let mut v = Vec::new();
    if let Some(t) = host.read_opt(runtime_config::CRIO_CONFIG)? {
        v.push((runtime_config::CRIO_CONFIG.to_string(), t));
    }
    for n in host.list_dir(runtime_config::CRIO_CONFIG_DIR)? {
        let p = format!("{}/{n}", runtime_config::CRIO_CONFIG_DIR);
        if let Some(t) = host.read_opt(&p)? {
            v.push((p, t));
        }
    }
    Ok(v)
}

pub fn gather(host: &Host) -> Fact<DriverFacts> {
    let config = host.read_opt(kubelet::CONFIG_PATH)?;
    let kubelet = match config.as_deref().map(kubelet::parse) {
        Some(Ok(k)) => match k.cgroup_driver.as_deref() {
            Some(d) => (
                Driver::parse(d).ok_or_else(|| {
                    FactError::Unreadable(format!(
                        "{}: unknown cgroupDriver {d:?}",
                        kubelet::CONFIG_PATH
                    ))
                })?,
                format!(
                    "{}:{}: cgroupDriver: {d}",
                    kubelet::CONFIG_PATH,
                    kubelet::line_of(config.as_deref().unwrap_or(""), "cgroupDriver").unwrap_or(0)
                ),
            ),
            None => (
                Driver::Cgroupfs,
                format!(
                    "{}: no cgroupDriver: the kubelet's default is cgroupfs",
                    kubelet::CONFIG_PATH
                ),
            ),
        },
        Some(Err(e)) => {
            return Err(FactError::Unreadable(format!(
                "{}: {e}",
                kubelet::CONFIG_PATH
            )));
        }
        None => (
            Driver::Systemd,
            format!(
                "{} does not exist yet: kubeadm writes cgroupDriver: systemd (its default since v1.22)",
                kubelet::CONFIG_PATH
            ),
        ),
    };
    let flags = host.read_opt(kubelet::FLAGS_ENV)?;
    let endpoint = cri::configured_endpoint(config.as_deref(), flags.as_deref())
        .and_then(|c| cri::socket_path(&c.endpoint))
        .or_else(|| {
            let found: Vec<&str> = cri::KNOWN_SOCKETS
                .iter()
                .copied()
                .filter(|p| host.exists(p) || host.exists(p.strip_prefix("/var").unwrap_or(p)))
                .collect();
            (found.len() == 1).then(|| found[0].to_string())
        });
    let runtime = endpoint.map(|sock| {
        let name = cri::runtime_of(&sock);
        let driver = match name {
            "containerd" => match host.read_opt(runtime_config::CONTAINERD_CONFIG) {
                Ok(Some(t)) => {
                    runtime_config::parse_containerd(runtime_config::CONTAINERD_CONFIG, &t)
                        .map(|c| c.driver)
                }
                Ok(None) => Ok(runtime_config::containerd_defaults().driver),
                Err(e) => Err(e.to_string()),
            },
            "CRI-O" => crio_files(host)
                .map_err(|e| e.to_string())
                .and_then(|f| runtime_config::parse_crio(&f)),
            "cri-dockerd" => match host.read_opt(runtime_config::DOCKER_DAEMON_JSON) {
                Ok(t) => runtime_config::parse_docker(
                    t.as_deref(),
                    host.exists("/sys/fs/cgroup/cgroup.controllers"),
                ),
                Err(e) => Err(e.to_string()),
            },
            other => Err(format!(
                "{sock}: {other}: its cgroup driver is not known to k8sdoctor"
            )),
        };
        (format!("{name} ({sock})"), driver)
    });
    Ok(DriverFacts { kubelet, runtime })
}

pub fn decide(d: &DriverFacts) -> Result<Finding, FactError> {
    let Some((runtime, driver)) = &d.runtime else {
        return Ok(Finding::skip(
            "no single container runtime found (runtime.cri-socket reports why): nothing to compare the kubelet's cgroup driver with",
        ));
    };
    let rd = driver.clone().map_err(FactError::Unreadable)?;
    let (kd, kev) = &d.kubelet;
    let ev = vec![kev.clone(), rd.evidence.clone()];
    if *kd == rd.driver {
        return Ok(Finding::pass(format!(
            "the kubelet and {runtime} both use the {} cgroup driver",
            kd.as_str()
        ))
        .evidence_all(ev));
    }
    let fix = if runtime.starts_with("containerd") {
        format!(
            "set SystemdCgroup = {} under [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options] (config version 3: plugins.'io.containerd.cri.v1.runtime') in {}, then `systemctl restart containerd`",
            *kd == Driver::Systemd,
            runtime_config::CONTAINERD_CONFIG
        )
    } else if runtime.starts_with("CRI-O") {
        format!(
            "set cgroup_manager = \"{}\" under [crio.runtime] in a file of {} (conmon_cgroup = \"pod\" for systemd), then `systemctl restart crio`",
            kd.as_str(),
            runtime_config::CRIO_CONFIG_DIR
        )
    } else {
        format!(
            "set \"exec-opts\": [\"native.cgroupdriver={}\"] in {} and restart docker",
            kd.as_str(),
            runtime_config::DOCKER_DAEMON_JSON
        )
    };
    Ok(Finding::fail(format!(
        "the kubelet uses the {} cgroup driver but {runtime} uses {}: two managers of the same cgroups make the node unstable (pods restarted, the kubelet failing with \"misconfiguration: kubelet cgroup driver\")",
        kd.as_str(),
        rd.driver.as_str()
    ))
    .evidence_all(ev)
    .remediation(fix))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::check::Status;

    #[test]
    fn containerd_default_against_kubeadms_systemd_fails() {
        let d = DriverFacts {
            kubelet: (Driver::Systemd, "kubeadm's default".into()),
            runtime: Some((
                "containerd (/var/run/containerd/containerd.sock)".into(),
                Ok(runtime_config::containerd_defaults().driver),
            )),
        };
        let f = decide(&d).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.remediation.unwrap().contains("SystemdCgroup = true"));
        let ok = DriverFacts {
            kubelet: (Driver::Cgroupfs, "x".into()),
            ..d.clone()
        };
        assert_eq!(decide(&ok).unwrap().status, Status::Pass);
        let none = DriverFacts {
            runtime: None,
            ..d.clone()
        };
        assert_eq!(decide(&none).unwrap().status, Status::Skip);
        let bad = DriverFacts {
            runtime: Some(("containerd".into(), Err("not valid TOML".into()))),
            ..d
        };
        assert!(matches!(decide(&bad), Err(FactError::Unreadable(_))));
    }
}
