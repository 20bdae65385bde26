//! The typed facts that checks read: one field per gathered area, each carrying its own error.

use thiserror::Error;

/// Why a fact is not available. Checks turn `Missing` into `skip` and `Unreadable` into `error`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FactError {
    /// The input does not exist here (file absent, tool not installed, not applicable).
    #[error("{0}")]
    Missing(String),
    /// The input exists but could not be read or understood.
    #[error("{0}")]
    Unreadable(String),
}

/// A gathered fact, or why it could not be gathered.
pub type Fact<T> = Result<T, FactError>;

/// Borrow a fact for a check, cloning only the error: `let x = get(&facts.swap)?;`.
pub fn get<T>(fact: &Fact<T>) -> Result<&T, FactError> {
    fact.as_ref().map_err(Clone::clone)
}

/// Everything the checks may read. An area that no selected check needs stays `Missing`.
#[derive(Debug)]
pub struct Facts {
    pub dns: Fact<crate::dns::DnsFacts>,
    pub swap: Fact<crate::swap::SwapFacts>,
    pub sysctl: Fact<crate::sysctl::SysctlFacts>,
    pub selinux: Fact<crate::selinux::SelinuxFacts>,
    pub cluster: Fact<crate::cluster::ClusterFacts>,
    pub proxy: Fact<crate::proxy::ProxyFacts>,
    pub firewall: Fact<crate::firewall::FirewallFacts>,
    pub preflight: Fact<crate::preflight::PreflightFacts>,
}

/// The gatherable areas; every check names the one it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Area {
    Dns,
    Swap,
    Sysctl,
    Selinux,
    Cluster,
    Proxy,
    Firewall,
    Preflight,
}

impl Area {
    /// Areas gathered from local files alone: they share one worker thread, since a thread per
    /// area costs more than reading the files. Areas that run commands or talk to the network
    /// get a thread each, so one that hangs cannot hold the others past the deadline.
    pub fn reads_only_files(self) -> bool {
        matches!(self, Area::Dns | Area::Swap | Area::Sysctl | Area::Selinux)
    }

    pub const ALL: &[Area] = &[
        Area::Dns,
        Area::Swap,
        Area::Sysctl,
        Area::Selinux,
        Area::Cluster,
        Area::Proxy,
        Area::Firewall,
        Area::Preflight,
    ];
}

impl Default for Facts {
    fn default() -> Self {
        let ng = || FactError::Missing("not gathered".into());
        Facts {
            dns: Err(ng()),
            swap: Err(ng()),
            sysctl: Err(ng()),
            selinux: Err(ng()),
            cluster: Err(ng()),
            proxy: Err(ng()),
            firewall: Err(ng()),
            preflight: Err(ng()),
        }
    }
}
