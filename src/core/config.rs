//! The configuration a run uses, built by `main.rs` from flags; nothing here knows about clap.

use std::{path::PathBuf, time::Duration};

use super::status::{Role, Status};

/// Which role to check for.
/// A host input a run-time check reads through its sources, beyond what built-in checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A sysctl key, read now (`/proc/sys`) and as persisted for boot (sysctl.d).
    Sysctl(String),
    /// An absolute file path under the root.
    File(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChoice {
    Auto,
    Fixed(Role),
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Junit,
    Markdown,
}

/// Which checks to run: `--only` and `--skip`, matched exactly and case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    /// The selection with kubeadm's preflight names (`Swap`, `Port-6443` ...) replaced by our ids.
    pub fn expanded(&self) -> Selection {
        Selection {
            only: super::catalog::expand_kubeadm_names(&self.only),
            skip: super::catalog::expand_kubeadm_names(&self.skip),
        }
    }

    pub fn selects(&self, id: &str) -> bool {
        let hit = |list: &[String]| {
            list.iter()
                .any(|s| s.eq_ignore_ascii_case(id) || s.eq_ignore_ascii_case("all"))
        };
        (self.only.is_empty() || hit(&self.only)) && !hit(&self.skip)
    }

    /// Ids named in `--only`/`--skip` that no check has: a typo that would silently select nothing.
    pub fn unknown_ids<'a>(&'a self, known: &[&str]) -> Vec<&'a str> {
        self.only
            .iter()
            .chain(&self.skip)
            .filter(|s| !s.eq_ignore_ascii_case("all"))
            .filter(|s| !known.iter().any(|k| k.eq_ignore_ascii_case(s)))
            .map(String::as_str)
            .collect()
    }
}

/// Everything a `check` run needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub role: RoleChoice,
    /// `--stage`: before init, before join, installed, or auto.
    pub stage: super::stage::StageChoice,
    pub selection: Selection,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub offline: bool,
    pub timeout: Duration,
    /// Where `kubectl proxy` is expected (proxy.localhost).
    pub proxy_port: u16,
    pub format: Format,
    pub output_file: Option<PathBuf>,
    pub fail_on: Status,
    pub color: bool,
    /// List every skipped check in the table (else skips sharing a reason are one row).
    pub show_skipped: bool,
    /// `--live-network`: under `--root`, read the network state (ruleset, links, routes, net sysctls,
    /// sockets, firewall processes) live from this process's own network namespace.
    pub live_network: bool,
    /// `--bundle FILE`: also record every input the run reads into FILE.
    pub bundle: Option<PathBuf>,
    /// `--from-bundle FILE`: evaluate from a recorded bundle instead of the host.
    pub from_bundle: Option<PathBuf>,
    /// `--from-bundle FILE --node NAME`: FILE is a fleet bundle; replay this node's bundle in it.
    pub from_bundle_node: Option<String>,
    /// The host inputs of the run-time checks (`--policy`) that run: set by the engine, read by their
    /// sources. (The checks themselves travel beside the config: they hold rules over the facts.)
    pub extra_inputs: Vec<Input>,
    /// `check --termination-log FILE`: also write the compact report there (fleet check pods).
    pub termination_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/"),
            role: RoleChoice::Auto,
            stage: Default::default(),
            selection: Selection::default(),
            kubeconfig: None,
            context: None,
            offline: false,
            timeout: Duration::from_secs(10),
            proxy_port: 8001,
            format: Format::Table,
            output_file: None,
            fail_on: Status::Fail,
            color: false,
            show_skipped: false,
            live_network: false,
            bundle: None,
            from_bundle: None,
            from_bundle_node: None,
            extra_inputs: Vec::new(),
            termination_log: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_exact_and_case_insensitive() {
        let s = Selection {
            only: vec!["SWAP.Active".into()],
            skip: vec![],
        };
        assert!(s.selects("swap.active"));
        assert!(!s.selects("swap.persistent"));
        assert!(!s.selects("swap"));
        let s = Selection {
            only: vec![],
            skip: vec!["ALL".into()],
        };
        assert!(!s.selects("swap.active"));
        let s = Selection {
            only: vec!["all".into()],
            skip: vec!["swap.active".into()],
        };
        assert!(s.selects("dns.loopback-nameserver") && !s.selects("swap.active"));
        let s = Selection {
            only: vec![],
            skip: vec!["dns.loopback-nameserver".into(), "bogus".into()],
        };
        assert!(!s.selects("dns.loopback-nameserver"));
        assert!(s.selects("swap.active"));
        assert_eq!(
            s.unknown_ids(&["swap.active", "dns.loopback-nameserver"]),
            ["bogus"]
        );
    }
}
