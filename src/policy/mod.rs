//! Site policies (`--policy FILE`): a YAML file of an institution's own requirements — flows its firewall
//! must accept, sysctl values, what files must or must not say — turned into checks (`policy.flow.NAME`,
//! `policy.sysctl.KEY`, `policy.file.NAME`) that run beside the built-in ones on the same facts.
//!
//! [`load`] reads and validates every file before anything is checked; [`Policy::checks`] makes the
//! run-time checks the engine runs, each with its own catalog entry for `list` and `explain`.

mod checks;
mod parse;

use std::sync::Arc;

pub use checks::{POLICY_FILES, POLICY_SYSCTLS, PolicySysctls, flow_queries, norm};
pub use parse::{
    At, FileRule, Flow, MAX_POLICY, Meta, Policy, PolicyError, SysctlRule, parse_into, schema,
};

use crate::{
    checks::firewall::FIREWALL,
    core::{
        catalog::Entry,
        check::{DynCheck, Input},
        host::Host,
    },
};

/// Reads and validates policy files in order; the first problem is the error (`FILE:LINE: what`).
pub fn load(paths: &[std::path::PathBuf]) -> Result<Policy, PolicyError> {
    let mut policy = Policy::default();
    for p in paths {
        let text = read(p)?;
        parse_into(&p.display().to_string(), &text, &mut policy)?;
    }
    Ok(policy)
}

/// A policy file's text: a regular file (FIFOs and devices are refused without blocking) of at most
/// [`MAX_POLICY`] bytes.
pub fn read(path: &std::path::Path) -> Result<String, PolicyError> {
    let name = path.display().to_string();
    let unreadable = |what: String| PolicyError {
        file: name.clone(),
        line: 0,
        what,
    };
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_POLICY) {
        return Err(unreadable(format!(
            "larger than {} KiB, the most a policy may be",
            MAX_POLICY >> 10
        )));
    }
    Host::live()
        .read(&name)
        .map_err(|e| unreadable(e.to_string()))
}

fn roles(m: &Meta) -> Vec<crate::core::check::Role> {
    m.roles.clone()
}

fn entry(id: String, title: String, m: &Meta, symptom: String, remediation: String) -> Entry {
    Entry {
        id,
        title,
        symptom,
        why: format!(
            "The site policy at {} requires it: a rule of this institution, checked on every run like the built-in checks.",
            m.at
        ),
        severity: m.severity,
        roles: roles(m),
        remediation,
        references: vec![m.at.to_string()],
        fix: false,
        kubeadm: vec![],
    }
}

fn flow_title(f: &Flow) -> String {
    let proto = match f.proto {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        _ => "sctp",
    };
    let port = match f.ports {
        Some((lo, hi)) if lo == hi => format!("/{lo}"),
        Some((lo, hi)) => format!("/{lo}-{hi}"),
        None => String::new(),
    };
    let from: Vec<String> = f.from.iter().map(|n| n.to_string()).collect();
    let on = f
        .iface
        .as_ref()
        .map(|i| format!(" on {i}"))
        .unwrap_or_default();
    let to = match f.to {
        Some(t) => format!(" routed to {t}"),
        None => " to this node".into(),
    };
    format!(
        "The firewall accepts {proto}{port} from {}{on}{to}",
        from.join(", ")
    )
}

impl Policy {
    /// The catalog entries of the policy's checks, sorted by id.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.checks().into_iter().map(|c| c.entry).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The run-time checks, one per entry.
    pub fn checks(&self) -> Vec<DynCheck> {
        let mut out = Vec::new();
        for f in &self.flows {
            let flow = f.clone();
            out.push(DynCheck {
                entry: entry(
                    format!("policy.flow.{}", f.meta.name),
                    flow_title(f),
                    &f.meta,
                    "traffic the site requires is rejected or dropped by the node's firewall (connection refused, no route to host, or a timeout)".into(),
                    "insert an ACCEPT for the flow before the rule that blocks it (the finding gives the command and position for iptables or nft), and persist it".into(),
                ),
                needs: &[&FIREWALL],
                inputs: vec![],
                run: Arc::new(move |facts, _| checks::flow(&flow, facts)),
            });
        }
        for s in &self.sysctls {
            let rule = s.clone();
            out.push(DynCheck {
                entry: entry(
                    format!("policy.sysctl.{}", s.meta.name),
                    format!("{} = {} now and at boot", s.meta.name, norm(&s.value)),
                    &s.meta,
                    format!("{} has another value than the site's baseline, now or after a reboot", s.meta.name),
                    format!(
                        "sysctl -w {}='{}', and persist it in a sysctl.d file applied after any other that sets it",
                        s.meta.name,
                        norm(&s.value)
                    ),
                ),
                needs: &[&POLICY_SYSCTLS],
                inputs: vec![Input::Sysctl(s.meta.name.clone())],
                run: Arc::new(move |facts, _| checks::sysctl(&rule, facts)),
            });
        }
        for f in &self.files {
            let rule = f.clone();
            let says = f.wants();
            out.push(DynCheck {
                entry: entry(
                    format!("policy.file.{}", f.meta.name),
                    format!("{}: {says}", f.path),
                    &f.meta,
                    format!("{} does not say what the site requires", f.path),
                    format!("edit {} so that {says}", f.path),
                ),
                needs: &[&POLICY_FILES],
                inputs: vec![Input::File(f.path.clone())],
                run: Arc::new(move |facts, _| checks::file(&rule, facts)),
            });
        }
        out
    }
}
