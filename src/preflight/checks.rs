//! The preflight-parity checks as one gathered area: each check reads its own input from [`PreflightFacts`].

use std::time::Duration;

use super::{
    binaries, cgroup, cgroup_driver, cri, hostname, ipv6, kconfig, kubeconfig_perms,
    kubelet_service, leftover, ports, proxy_env, resources,
    stage::{KUBELET_CONF, Stage},
};
use crate::{
    check::CheckDef,
    config::Config,
    facts::{Area, Fact, get},
    host::Host,
};

/// Every preflight input, each with its own error.
#[derive(Debug)]
pub struct PreflightFacts {
    pub stage: Stage,
    pub ports: Fact<ports::PortsFacts>,
    pub leftover: Fact<leftover::LeftoverFacts>,
    pub cri: Fact<cri::CriFacts>,
    pub driver: Fact<cgroup_driver::DriverFacts>,
    pub cgroup: Fact<cgroup::CgroupFacts>,
    pub resources: Fact<resources::ResourceFacts>,
    pub binaries: Fact<binaries::BinariesFacts>,
    pub hostname: Fact<hostname::HostnameFacts>,
    pub proxy_env: Fact<proxy_env::ProxyEnvFacts>,
    pub ipv6: Fact<ipv6::Ipv6Facts>,
    pub kconfig: Fact<kconfig::KernelConfig>,
    pub kubelet_service: Fact<kubelet_service::KubeletServiceFacts>,
    pub perms: Fact<kubeconfig_perms::PermsFacts>,
}

/// The stage this run checks for (`--stage`, or auto from kubelet.conf and the role).
pub fn stage(host: &Host, cfg: &Config) -> Stage {
    let role = crate::engine::resolve_role(cfg.role, host);
    Stage::resolve(cfg.stage, host.exists(KUBELET_CONF), role)
}

pub fn gather(host: &Host, cfg: &Config) -> Fact<PreflightFacts> {
    // The CRI call and the name lookup share the run's deadline with everything else.
    let step = cfg.timeout.mul_f64(0.3).min(Duration::from_secs(3));
    Ok(PreflightFacts {
        stage: stage(host, cfg),
        ports: ports::gather(host),
        leftover: leftover::gather(host),
        cri: cri::gather(host, step),
        driver: cgroup_driver::gather(host),
        cgroup: cgroup::gather(host),
        resources: resources::gather(host),
        binaries: binaries::gather(host),
        hostname: hostname::gather(host, cfg.offline, step),
        proxy_env: proxy_env::gather(host),
        ipv6: ipv6::gather(host),
        kconfig: kconfig::gather(host),
        kubelet_service: kubelet_service::gather(host),
        perms: kubeconfig_perms::gather(host),
    })
}

macro_rules! check {
    ($id:literal, $f:expr) => {
        CheckDef {
            id: $id,
            area: Area::Preflight,
            run: $f,
        }
    };
}

pub const CHECKS: &[CheckDef] = &[
    check!("ports.in-use", |f, c| {
        let p = get(&f.preflight)?;
        ports::check(&p.ports, c.role, p.stage)
    }),
    check!("kubeadm.leftover-state", |f, _| {
        let p = get(&f.preflight)?;
        leftover::check(&p.leftover, p.stage)
    }),
    check!("runtime.cri-socket", |f, _| cri::check(
        &get(&f.preflight)?.cri
    )),
    check!("runtime.cgroup-driver", |f, _| cgroup_driver::check(
        &get(&f.preflight)?.driver
    )),
    check!("cgroup.version", |f, _| cgroup::check(
        &get(&f.preflight)?.cgroup
    )),
    check!("host.cpu-memory", |f, _| resources::check(
        &get(&f.preflight)?.resources
    )),
    check!("host.binaries", |f, _| binaries::check(
        &get(&f.preflight)?.binaries
    )),
    check!("host.hostname", |f, _| hostname::check(
        &get(&f.preflight)?.hostname
    )),
    check!("proxy.env", |f, _| proxy_env::check(
        &get(&f.preflight)?.proxy_env
    )),
    check!("sysctl.ipv6-forward", |f, _| ipv6::check(
        &get(&f.preflight)?.ipv6
    )),
    check!("kernel.config", |f, _| kconfig::check(
        &get(&f.preflight)?.kconfig
    )),
    check!("kubelet.service", |f, _| kubelet_service::check(
        &get(&f.preflight)?.kubelet_service
    )),
    check!("files.kubeconfig-perms", |f, _| kubeconfig_perms::check(
        &get(&f.preflight)?.perms
    )),
];
