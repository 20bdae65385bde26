//! kubeadm preflight parity, read-only: the inputs (each a parser from strings plus its gatherer) and
//! the decisions of the checks kubeadm runs before `init`/`join`, done without binding, loading or creating anything.

pub mod ports;
pub mod stage;
pub mod cri;
pub mod leftover;
pub mod runtime_config;
pub mod cgroup;
pub mod kconfig;
pub mod resources;
pub mod binaries;
pub mod checks;
pub mod hostname;
pub mod init;
pub mod ipv6;
pub mod kubeconfig_perms;
pub mod kubelet_service;
pub mod proxy_env;
pub mod cgroup_driver;

pub use checks::{CHECKS, PreflightFacts, gather};
