//! kubeadm preflight parity, read-only: the inputs (each a parser from strings plus its gatherer) and
//! the decisions of the checks kubeadm runs before `init`/`join`, done without binding, loading or creating anything.

pub mod binaries;
pub mod cgroup;
pub mod cgroup_driver;
pub mod checks;
pub mod cri;
pub mod hostname;
pub mod init;
pub mod ipv6;
pub mod kconfig;
pub mod kubeconfig_perms;
pub mod kubelet_service;
pub mod leftover;
pub mod ports;
pub mod proxy_env;
pub mod resources;
pub mod runtime_config;
pub mod stage;

pub use checks::{CHECKS, PreflightFacts, gather};
