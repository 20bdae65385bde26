//! k8sdoctor: finds the pitfalls of a kubeadm install on a node or cluster, with evidence and a fix.
//!
//! The flow is sources → facts → pure checks → one report: [`core::engine::run`] drives it,
//! [`core::host::Host`] is the only reader of host files, [`checks::AREAS`] lists every check area,
//! and [`report::Report`] feeds every renderer. The commands `fix`, `join-check` and `multicast` sit beside.

pub mod bundle;
pub mod checks;
pub mod core;
pub mod fix;
pub mod fleet;
pub mod fuzz_targets;
pub mod join;
pub mod list;
pub mod manifests;
pub mod mask;
pub mod multicast;
pub mod nodebin;
pub mod policy;
pub mod procnet;
pub mod report;
