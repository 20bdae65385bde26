//! k8sdoctor: finds the pitfalls of a kubeadm install on a node or cluster, with evidence and a fix.
//!
//! The flow is gather → facts → pure checks → one report: [`engine::run`] drives it,
//! [`host::Host`] is the only reader of host files, and [`report::Report`] feeds every renderer.

pub mod catalog;
pub mod check;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod engine;
pub mod facts;
pub mod firewall;
pub mod fix;
pub mod fuzz_targets;
pub mod host;
pub mod join;
pub mod kubelet;
pub mod list;
pub mod mask;
pub mod multicast;
pub mod procnet;
pub mod proxy;
pub mod report;
pub mod selinux;
pub mod swap;
pub mod sysctl;
