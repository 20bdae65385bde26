//! The `firewall.*` checks: each builds the queries for the traffic a node needs and judges the evaluator's answers.

use crate::core::{
    check::{CheckDef, Ctx, Finding, Outcome},
    facts::{FactError, get},
    source::Facts,
};

use super::{
    FIREWALL, FirewallFacts,
    eval::{Answer, Hook, InsertPoint, Query, evaluate},
    hostnet::{self, Cni, NodeNet},
    model::{Origin, Ruleset, Verdict},
    net::Net,
};

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "firewall.apiserver-port",
        needs: &[&FIREWALL],
        run: apiserver_port,
    },
    CheckDef {
        id: "firewall.backend",
        needs: &[&FIREWALL],
        run: backend,
    },
    CheckDef {
        id: "firewall.control-plane-ports",
        needs: &[&FIREWALL],
        run: control_plane_ports,
    },
    CheckDef {
        id: "firewall.forward",
        needs: &[&FIREWALL],
        run: forward,
    },
    CheckDef {
        id: "firewall.kubelet-port",
        needs: &[&FIREWALL],
        run: kubelet_port,
    },
    CheckDef {
        id: "firewall.manager",
        needs: &[&FIREWALL],
        run: manager,
    },
    CheckDef {
        id: "firewall.overlay",
        needs: &[&FIREWALL],
        run: overlay,
    },
];

/// One path a node needs open, and whether a block there is only a warning (a guessed pod range).
pub struct Probe {
    pub query: Query,
    pub soft: bool,
}

fn node_probes(fw: &FirewallFacts, make: impl Fn(Net) -> Query) -> Result<Vec<Probe>, FactError> {
    let nets = get(&fw.node_nets)?;
    Ok(nets
        .iter()
        .map(|n: &NodeNet| {
            let mut q = make(n.net).on(n.iface.clone());
            q.dest = n.addr.map(Net::host);
            Probe {
                query: q,
                soft: false,
            }
        })
        .collect())
}

/// The address pods (or peers) reach this host at: its first node address of the family.
pub fn node_addr(fw: &FirewallFacts, v6: bool) -> Option<std::net::IpAddr> {
    fw.node_nets
        .as_ref()
        .ok()?
        .iter()
        .filter_map(|n| n.addr)
        .find(|a| a.is_ipv6() == v6)
}

fn pod_probes(fw: &FirewallFacts, port: u16) -> Vec<Probe> {
    match &fw.cni {
        Some(cni) => cni
            .pod_nets
            .iter()
            .map(|net| {
                let mut q = Query::tcp(port, *net).on(cni.ifaces[0].clone());
                q.dest = node_addr(fw, net.is_v6()).map(Net::host);
                Probe {
                    query: q,
                    soft: false,
                }
            })
            .collect(),
        None => hostnet::COMMON_DEFAULTS
            .iter()
            .map(|(_, net)| {
                let net: Net = net.parse().expect("valid default");
                let mut q = Query::tcp(port, net);
                q.dest = node_addr(fw, false).map(Net::host);
                Probe {
                    query: q,
                    soft: true,
                }
            })
            .collect(),
    }
}

fn apiserver_probes(fw: &FirewallFacts) -> Result<Vec<Probe>, FactError> {
    let mut probes = node_probes(fw, |n| Query::tcp(6443, n))?;
    probes.extend(pod_probes(fw, 6443));
    Ok(probes)
}

fn apiserver_port(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let probes = apiserver_probes(fw)?;
    let note = match &fw.cni {
        Some(c) => format!(
            "pod network of {} from {}: {}",
            c.name,
            c.source,
            c.pod_nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        ),
        None => "no CNI configured yet: pod network checked against the common defaults (Weave 10.32.0.0/12, Flannel 10.244.0.0/16, Calico 192.168.0.0/16)".into(),
    };
    Ok(judge(fw, rules, &probes, "the API server port").evidence(note))
}

fn kubelet_port(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let probes = node_probes(fw, |n| Query::tcp(10250, n))?;
    Ok(judge(fw, rules, &probes, "the kubelet port"))
}

fn control_plane_probes(fw: &FirewallFacts) -> Result<Vec<Probe>, FactError> {
    let mut probes = Vec::new();
    for port in [2379, 2380, 10257, 10259] {
        probes.extend(node_probes(fw, |n| Query::tcp(port, n))?);
    }
    Ok(probes)
}

fn control_plane_ports(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let probes = control_plane_probes(fw)?;
    Ok(judge(fw, rules, &probes, "the control-plane ports"))
}

/// The CNI's own ports (FACTS.md § Ports): (protocol, port) pairs; port `None` for IP-in-IP.
fn cni_ports(cni: &str, ifaces: &[String]) -> Vec<(u8, Option<u16>)> {
    match cni {
        "weave" => vec![(6, Some(6783)), (17, Some(6783)), (17, Some(6784))],
        "flannel" => vec![(17, Some(8472))],
        "calico" => {
            let vxlan = ifaces.iter().any(|i| i == "vxlan.calico");
            let ipip = ifaces.iter().any(|i| i == "tunl0");
            let mut v = vec![(6, Some(179))];
            if ipip || !vxlan {
                v.push((4, None));
            }
            if vxlan || !ipip {
                v.push((17, Some(4789)));
            }
            v
        }
        "cilium" => vec![(17, Some(8472)), (6, Some(4240))],
        "antrea" => vec![(17, Some(6081))],
        _ => vec![],
    }
}

fn overlay(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let Some(cni) = &fw.cni else {
        return Ok(Finding::skip(format!(
            "no CNI found: no config in {} and no overlay interface (weave, flannel.1, cni0, cali*, vxlan.calico, cilium_host, antrea-gw0)",
            super::gather::CNI_DIR
        )));
    };
    let probes = overlay_probes(fw, cni)?;
    Ok(
        judge(fw, rules, &probes, &format!("{} overlay traffic", cni.name)).evidence(format!(
            "CNI {} from {}; overlay interfaces: {}",
            cni.name,
            cni.source,
            cni.ifaces.join(", ")
        )),
    )
}

fn overlay_probes(fw: &FirewallFacts, cni: &Cni) -> Result<Vec<Probe>, FactError> {
    let mut probes = Vec::new();
    for iface in &cni.ifaces {
        for net in &cni.pod_nets {
            for port in [6443, 10250] {
                let mut q = Query::tcp(port, *net).on(iface.clone());
                q.dest = node_addr(fw, net.is_v6()).map(Net::host);
                probes.push(Probe {
                    query: q,
                    soft: false,
                });
            }
        }
    }
    for (proto, port) in cni_ports(&cni.name, &fw.interfaces) {
        probes.extend(node_probes(fw, |n| match port {
            Some(p) => Query {
                proto,
                dport: Some(p),
                ..Query::tcp(p, n)
            },
            None => Query::proto(proto, n),
        })?);
    }
    Ok(probes)
}

/// Routed pod traffic through this node: for each pod network, pod → pod on another node (TCP and UDP, every
/// port) out of the pod side and into it from the tunnel (or the node network when the CNI routes without
/// one), and pod → service (a service address DNATed to a pod elsewhere). Without a CNI, the common default
/// pod ranges on `cni0`, as a warning.
fn forward_probes(fw: &FirewallFacts) -> Vec<Probe> {
    let node_if = fw
        .node_nets
        .as_ref()
        .ok()
        .and_then(|n| n.first())
        .map(|n| n.iface.clone())
        .unwrap_or_else(|| "eth0".into());
    let (nets, bridge, cross, soft): (Vec<Net>, String, String, bool) = match &fw.cni {
        Some(c) => (
            c.pod_nets.clone(),
            c.bridge.clone(),
            c.tunnel.clone().unwrap_or(node_if),
            false,
        ),
        None => (
            hostnet::COMMON_DEFAULTS
                .iter()
                .map(|(_, n)| n.parse().expect("valid default"))
                .collect(),
            "cni0".into(),
            node_if,
            true,
        ),
    };
    let mut probes = Vec::new();
    for net in nets {
        let q = |proto| Query::forward(proto, net, net);
        for query in [
            q(6).on(bridge.clone()).out(cross.clone()),
            q(17).on(bridge.clone()).out(cross.clone()),
            q(6).on(cross.clone()).out(bridge.clone()),
            q(17).on(cross.clone()).out(bridge.clone()),
            q(6).on(bridge.clone()).out(cross.clone()).dnat(),
        ] {
            probes.push(Probe { query, soft });
        }
    }
    probes
}

fn forward(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    let rules = get(&fw.rules)?;
    let probes = forward_probes(fw);
    let note = match &fw.cni {
        Some(c) => format!(
            "CNI {} from {}: pod side {}, other nodes via {}",
            c.name,
            c.source,
            c.bridge,
            c.tunnel.as_deref().unwrap_or("the node network (no tunnel)")
        ),
        None => "no CNI configured yet: routed pod traffic checked for the common default pod ranges on cni0".into(),
    };
    Ok(judge(fw, rules, &probes, "routed pod traffic").evidence(note))
}

/// A path a firewall check found blocked, with the evaluator's answer; `guessed` when its source is only a
/// CNI's default pod range (no CNI configured yet).
pub struct Blocked {
    pub answer: Answer,
    pub guessed: bool,
}

/// The blocked paths behind a firewall check's finding: what `k8sdoctor fix` opens. Same probes as the check.
pub fn blocked_paths(id: &str, fw: &FirewallFacts) -> Result<Vec<Blocked>, FactError> {
    let rules = get(&fw.rules)?;
    let probes = match id {
        "firewall.apiserver-port" => apiserver_probes(fw)?,
        "firewall.kubelet-port" => node_probes(fw, |n| Query::tcp(10250, n))?,
        "firewall.control-plane-ports" => control_plane_probes(fw)?,
        "firewall.forward" => forward_probes(fw),
        "firewall.overlay" => match &fw.cni {
            Some(cni) => overlay_probes(fw, cni)?,
            None => vec![],
        },
        _ => vec![],
    };
    Ok(probes
        .into_iter()
        .map(|p| Blocked {
            answer: evaluate(rules, &p.query),
            guessed: p.soft,
        })
        .filter(|b| b.answer.verdict().blocks())
        .collect())
}

fn manager(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    if fw.managers.is_empty() {
        // No process seen at all (a root without a process table) says nothing of what runs: only the boot
        // configuration was judged, and the message says so.
        let looked = format!(
            "processes looked at: {}",
            fw.processes
                .iter()
                .map(|(t, n)| format!("{t} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let conf = "no enabled firewalld unit; /etc/ufw/ufw.conf not ENABLED=yes";
        return Ok(if fw.processes.iter().all(|(_, n)| *n == 0) {
            Finding::pass(
                "neither firewalld nor ufw is enabled at boot (no running process could be seen)",
            )
            .evidence(conf)
            .evidence(format!(
                "{looked}: a firewalld started by hand would not show (run with hostPID and --live-network)"
            ))
        } else {
            Finding::pass("neither firewalld nor ufw is active")
                .evidence(format!("no firewalld process; {conf}"))
                .evidence(looked)
        });
    }
    let names: Vec<&str> = fw.managers.iter().map(|m| m.name.as_str()).collect();
    Ok(Finding::warn(format!(
        "{} manages the firewall: it rewrites the rules on reload, dropping rules added with iptables/nft (kubeadm only looks for firewalld)",
        names.join(" and ")
    ))
    .evidence_all(fw.managers.iter().map(|m| m.evidence.clone()))
    .remediation(match names[0] {
        "ufw" => "open the ports through ufw itself (ufw allow 6443/tcp, ufw allow 10250/tcp, the CNI's ports) or disable it (ufw disable)",
        _ => "open the ports through firewalld (firewall-cmd --permanent --add-port=6443/tcp --add-port=10250/tcp ...; firewall-cmd --reload) or stop and disable it",
    }))
}

fn backend(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let fw = facts.get(&FIREWALL)?;
    if !fw.live {
        return Ok(Finding::skip(
            "the backend split is only visible on the running host (not under --root)",
        ));
    }
    let rules = get(&fw.rules)?;
    let legacy = rules.holds_rules(Origin::IptablesLegacy);
    let nft = rules.holds_rules(Origin::IptablesNft) || rules.holds_rules(Origin::Nftables);
    let mut evidence: Vec<String> = fw.sources.iter().map(|s| format!("read {s}")).collect();
    if let Some(b) = &fw.iptables_backend {
        evidence.push(format!("iptables --version: {b} backend"));
    }
    if legacy && nft {
        return Ok(Finding::warn(
            "rules live in both the legacy (x_tables) and the nf_tables backend: each filters packets on its own, and tools see only one of them",
        )
        .evidence_all(evidence)
        .remediation(
            "pick one backend (update-alternatives --set iptables /usr/sbin/iptables-nft, or -legacy), move the rules there and flush the other (iptables-legacy-save / iptables-nft-save to compare)",
        ));
    }
    let which = match (legacy, nft) {
        (true, _) => "only the legacy backend holds rules",
        (_, true) => "only the nf_tables backend holds rules",
        _ => "no backend holds rules",
    };
    Ok(Finding::pass(which).evidence_all(evidence))
}

/// Judges probes: fail when a required path is blocked, warn when one is unknown or a guessed path is blocked.
pub fn judge(fw: &FirewallFacts, rules: &Ruleset, probes: &[Probe], what: &str) -> Finding {
    if probes.is_empty() {
        return Finding::skip(format!(
            "no network to check {what} from: no non-loopback interface with an address"
        ));
    }
    let answers: Vec<(&Probe, Answer)> = probes
        .iter()
        .map(|p| (p, evaluate(rules, &p.query)))
        .collect();
    let mut evidence = vec![format!("rules read from {}", fw.sources.join("; "))];
    evidence.extend(fw.problems.iter().map(|p| format!("could not read: {p}")));
    for (_, a) in &answers {
        evidence.extend(a.explain());
    }
    // Beside live rules, the saved ones answer the same queries: where they differ, a rule is not persisted.
    let saved_said = |a: &Answer| -> Option<(String, Answer)> {
        let s = fw.saved.as_ref()?;
        let b = evaluate(&s.rules, &a.query);
        (b.verdict().blocks() != a.verdict().blocks() && b.verdict() != Verdict::Unknown)
            .then(|| (s.sources.join("; "), b))
    };
    let disagree: Vec<(&Answer, String, Answer)> = answers
        .iter()
        .filter(|(_, a)| a.verdict() != Verdict::Unknown)
        .filter_map(|(_, a)| saved_said(a).map(|(src, b)| (a, src, b)))
        .collect();
    for (a, src, b) in &disagree {
        let d = b.decisive();
        evidence.push(format!(
            "the saved rules ({src}) disagree with the live ones for {}: they {} it{} (the live rules decide until the next reboot or reload)",
            a.query.describe_for(a.decisive().source),
            if b.verdict().blocks() { "block" } else { "accept" },
            d.rule.as_ref().map(|r| format!(" by {}", r.cite())).unwrap_or_default(),
        ));
    }
    if let Some(s) = &fw.saved
        && disagree.is_empty()
    {
        evidence.push(format!(
            "the saved rules ({}) decide these paths the same way",
            s.sources.join("; ")
        ));
    }
    let blocked = |soft: bool| {
        answers
            .iter()
            .filter(move |(p, a)| p.soft == soft && a.verdict().blocks())
    };
    let unknown: Vec<_> = answers
        .iter()
        .filter(|(_, a)| a.verdict() == Verdict::Unknown)
        .collect();
    let hard: Vec<_> = blocked(false).collect();
    let soft: Vec<_> = blocked(true).collect();
    let n = answers.len();
    if let Some((_, first)) = hard.first() {
        let d = first.decisive();
        let mut by = d.rule.as_ref().map(|r| r.cite()).unwrap_or_default();
        if let Some((r, why)) = &d.across {
            by.push_str(&format!(
                " (past {}, which cannot let it all through: {why})",
                r.cite()
            ));
        }
        let mut f = Finding::fail(format!(
            "{what}: {} is {} by {by}{}",
            first.query.describe_for(d.source),
            if d.verdict == Verdict::Drop {
                "dropped"
            } else {
                "rejected"
            },
            match (n, soft.len()) {
                (1, _) => String::new(),
                (_, 0) => format!(" ({} of {n} paths blocked)", hard.len()),
                (_, k) => format!(
                    " ({} of {n} paths blocked, and {k} more if the CNI uses its default pod range)",
                    hard.len()
                ),
            },
        ))
        .evidence_all(evidence);
        let fixes: Vec<String> = hard.iter().filter_map(|(_, a)| remedy(fw, a)).collect();
        if !fixes.is_empty() {
            f = f.remediation(persist_note(fw, dedup(fixes).join("; ")));
        }
        return f;
    }
    if let Some((_, first)) = unknown.first() {
        let d = first.decisive();
        return Finding::warn(format!(
            "cannot tell whether {} is accepted: {}",
            first.query.describe_for(d.source),
            d.explain()
        ))
        .evidence_all(evidence)
        .remediation("check the named rule by hand (or by sending a real connection); the evaluator does not model that match");
    }
    if let Some((_, first)) = soft.first() {
        let d = first.decisive();
        let fixes: Vec<String> = soft.iter().filter_map(|(_, a)| remedy(fw, a)).collect();
        return Finding::warn(format!(
            "{} of {n} paths to {what} would be blocked if the CNI uses its default pod range: {} by {}",
            soft.len(),
            first.query.describe_for(d.source),
            d.explain()
        ))
        .evidence_all(evidence)
        .remediation(persist_note(fw, dedup(fixes).join("; ")));
    }
    // Accepted now only by a rule that is not persisted: blocked again after a reboot, as a runtime sysctl
    // that the boot files do not keep.
    if let Some((a, src, b)) = disagree.iter().find(|(_, _, b)| b.verdict().blocks()) {
        let d = b.decisive();
        return Finding::warn(format!(
            "{what}: {} is accepted by the live rules, but the saved rules ({src}) {} it{}: the accepting rule is not persisted",
            a.query.describe_for(a.decisive().source),
            if d.verdict == Verdict::Drop { "drop" } else { "reject" },
            d.rule.as_ref().map(|r| format!(" by {}", r.cite())).unwrap_or_default(),
        ))
        .evidence_all(evidence)
        .remediation("save the running rules where the host loads them at boot (service iptables save, netfilter-persistent save, nft list ruleset > /etc/nftables.conf), or open the path in the saved file");
    }
    // What could not be read may hold the block: never a pass on part of the ruleset.
    if !fw.problems.is_empty() {
        return Finding::error(format!(
            "the firewall could only partly be read, and the part read accepts {what}: {}",
            fw.problems.join("; ")
        ))
        .evidence_all(evidence);
    }
    let msg = if n == 1 {
        format!("the path to {what} is accepted")
    } else {
        format!("all {n} paths to {what} are accepted")
    };
    Finding::pass(msg).evidence_all(evidence)
}

/// Commands change the running rules only; say how to keep them.
pub fn persist_note(fw: &FirewallFacts, cmds: String) -> String {
    if fw.live {
        format!(
            "{cmds} (then persist: service iptables save, netfilter-persistent save or the nftables.conf the host loads)"
        )
    } else {
        format!(
            "{cmds} (and add the same rules, in the same place, to the saved rules file named in the evidence)"
        )
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}

/// The command that inserts an ACCEPT before the deciding rule.
fn remedy(fw: &FirewallFacts, a: &Answer) -> Option<String> {
    let d = a.decisive();
    let ip = d.insert_point()?;
    Some(accept_command(fw, &a.query, d.source, &ip))
}

/// The ACCEPT rule that opens one blocked path, placed before the deciding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// `iptables`, `ip6tables-nft` ... or `nft`.
    pub tool: String,
    pub at: InsertPoint,
    /// The rule: iptables arguments (`-s 10.0.0.0/8 -i eth0 -p tcp -m tcp --dport 6443 -j ACCEPT`), or nft
    /// statement words (`ip saddr 10.0.0.0/8 iifname "eth0" tcp dport 6443 accept`).
    pub rule: Vec<String>,
}

/// The rule that accepts `q` from `source`, for the tool that holds the deciding rule. Routed traffic
/// queried for every port is pod traffic: accepted whole between the networks, whichever protocol and
/// interfaces (flannel's rules); anything else gets a rule with every match of the query ([`exact_accept`]).
pub fn accept_rule(fw: &FirewallFacts, q: &Query, source: Net, ip: &InsertPoint) -> Accept {
    let v6 = source.is_v6();
    let dest = q.dest.filter(|_| q.hook == Hook::Forward);
    let Some(dest) = dest.filter(|_| q.dport.is_none() && q.dports.is_none()) else {
        return exact_accept(fw, q, source, ip);
    };
    let (tool, rule) = if ip.origin.is_iptables() {
        let base = if v6 { "ip6tables" } else { "iptables" };
        let rule = ["-s", &source.to_string(), "-d", &dest.to_string(), "-j", "ACCEPT"];
        (iptables_tool(fw, ip.origin, base), words(&rule))
    } else {
        let fam = if v6 { "ip6" } else { "ip" };
        let rule = [fam, "saddr", &source.to_string(), fam, "daddr", &dest.to_string(), "accept"];
        ("nft".to_string(), words(&rule))
    };
    Accept {
        tool,
        at: ip.clone(),
        rule,
    }
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|w| w.to_string()).collect()
}

/// The rule that accepts exactly the traffic of `q` from `source`: source, destination (routed), input
/// interface, protocol and port or port range, for the tool that holds the deciding rule.
pub fn exact_accept(fw: &FirewallFacts, q: &Query, source: Net, ip: &InsertPoint) -> Accept {
    let v6 = source.is_v6();
    let proto_name = match q.proto {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        58 => "ipv6-icmp".to_string(),
        132 => "sctp".to_string(),
        p => p.to_string(),
    };
    let dest = q.dest.filter(|_| q.hook == Hook::Forward);
    let ports = match (q.dport, q.dports) {
        (Some(p), _) => Some((p, p)),
        (None, r) => r,
    };
    let mut rule: Vec<String> = Vec::new();
    let mut push = |w: &[&str]| rule.extend(words(w));
    let tool = if ip.origin.is_iptables() {
        let base = if v6 { "ip6tables" } else { "iptables" };
        push(&["-s", &source.to_string()]);
        if let Some(d) = dest {
            push(&["-d", &d.to_string()]);
        }
        if let Some(i) = &q.iface {
            push(&["-i", i]);
        }
        push(&["-p", &proto_name]);
        match ports {
            Some((lo, hi)) if lo == hi => push(&["-m", &proto_name, "--dport", &lo.to_string()]),
            Some((lo, hi)) => push(&["-m", &proto_name, "--dport", &format!("{lo}:{hi}")]),
            None => {}
        }
        push(&["-j", "ACCEPT"]);
        iptables_tool(fw, ip.origin, base)
    } else {
        let fam = if v6 { "ip6" } else { "ip" };
        push(&[fam, "saddr", &source.to_string()]);
        if let Some(d) = dest {
            push(&[fam, "daddr", &d.to_string()]);
        }
        if let Some(i) = &q.iface {
            push(&["iifname", &format!("\"{i}\"")]);
        }
        let nft_proto = match q.proto {
            58 => "icmpv6".to_string(),
            _ => proto_name.clone(),
        };
        match ports {
            Some((lo, hi)) if lo == hi => push(&[&nft_proto, "dport", &lo.to_string()]),
            Some((lo, hi)) => push(&[&nft_proto, "dport", &format!("{lo}-{hi}")]),
            None => push(&["meta", "l4proto", &nft_proto]),
        }
        push(&["accept"]);
        "nft".to_string()
    };
    Accept {
        tool,
        at: ip.clone(),
        rule,
    }
}

/// The iptables program that edits rules of `origin`: the plain name when it is that backend.
fn iptables_tool(fw: &FirewallFacts, origin: Origin, base: &str) -> String {
    match (origin, fw.iptables_backend.as_deref()) {
        (Origin::IptablesLegacy, Some("legacy"))
        | (Origin::IptablesNft, Some("nf_tables"))
        | (Origin::IptablesSaved, _) => base.to_string(),
        (Origin::IptablesLegacy, _) => format!("{base}-legacy"),
        _ => format!("{base}-nft"),
    }
}

/// `iptables -I INPUT 5 -s 10.0.0.0/8 -i eth0 -p tcp -m tcp --dport 6443 -j ACCEPT` or the nft equivalent.
pub fn accept_command(fw: &FirewallFacts, q: &Query, source: Net, ip: &InsertPoint) -> String {
    insert_command(&accept_rule(fw, q, source, ip))
}

/// The command that inserts an [`Accept`] at its place.
pub fn insert_command(a: &Accept) -> String {
    let ip = &a.at;
    let rule = a.rule.join(" ");
    if ip.origin.is_iptables() {
        format!("{} -I {} {} {rule}", a.tool, ip.chain, ip.position)
    } else {
        let fam = ip.family.as_str();
        match ip.handle {
            Some(h) => format!(
                "nft insert rule {fam} {} {} position {h} {rule}",
                ip.table, ip.chain
            ),
            None => format!("nft add rule {fam} {} {} {rule}", ip.table, ip.chain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::check::{Role, Status},
        checks::firewall::{Manager, Saved, hostnet::Cni, iptables, model::Family},
    };

    fn facts(rules: &str, origin: Origin, cni: Option<Cni>) -> Facts {
        let fw = FirewallFacts {
            rules: Ok(iptables::parse(rules, origin, Family::Ip).unwrap()),
            sources: vec!["test rules".into()],
            problems: vec![],
            live: true,
            saved: None,
            iptables_backend: Some("nf_tables".into()),
            node_nets: Ok(vec![NodeNet {
                iface: "eth0".into(),
                net: "192.168.1.0/24".parse().unwrap(),
                addr: "192.168.1.10".parse().ok(),
            }]),
            interfaces: vec!["lo".into(), "eth0".into()],
            cni,
            managers: vec![],
            processes: vec![],
        };
        Facts::default().with(&FIREWALL, Ok(fw))
    }
    fn ctx() -> Ctx {
        Ctx {
            role: Role::ControlPlane,
            now: std::time::SystemTime::now(),
        }
    }
    const CENTOS7: &str = include_str!("../../../fixtures/firewall/centos7-default.rules");
    const GUIDE: &str = include_str!("../../../fixtures/firewall/centos7-guide.rules");
    fn weave() -> Option<Cni> {
        Some(Cni {
            name: "weave".into(),
            source: "/etc/cni/net.d/10-weave.conflist".into(),
            pod_nets: vec!["10.32.0.0/12".parse().unwrap()],
            ifaces: vec!["weave".into()],
            bridge: "weave".into(),
            tunnel: Some("weave".into()),
        })
    }

    #[test]
    fn centos7_defaults_fail_with_the_reject_rule_and_an_insert_command() {
        let f = apiserver_port(&facts(CENTOS7, Origin::IptablesNft, weave()), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("filter/INPUT #5: -A INPUT -j REJECT"),
            "{}",
            f.message
        );
        let r = f.remediation.unwrap();
        assert!(
            r.contains(
                "iptables -I INPUT 5 -s 192.168.1.0/24 -i eth0 -p tcp -m tcp --dport 6443 -j ACCEPT"
            ),
            "{r}"
        );
        assert!(
            r.contains(
                "iptables -I INPUT 5 -s 10.32.0.0/12 -i weave -p tcp -m tcp --dport 6443 -j ACCEPT"
            ),
            "{r}"
        );
        for c in [kubelet_port, control_plane_ports, overlay] {
            assert_eq!(
                c(&facts(CENTOS7, Origin::IptablesNft, weave()), &ctx())
                    .unwrap()
                    .status,
                Status::Fail
            );
        }
    }

    #[test]
    fn the_guides_rules_open_the_api_server_but_not_the_rest() {
        let f = apiserver_port(&facts(GUIDE, Origin::IptablesNft, weave()), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("tcp/6443 from 10.32.0.0/12 on weave") && e.contains("#6")),
            "{:?}",
            f.evidence
        );
        // The weave rule accepts all overlay traffic, but Weave's own ports from the node network stay closed.
        let f = overlay(&facts(GUIDE, Origin::IptablesNft, weave()), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.message.contains("tcp/6783 from 192.168.1.0/24"),
            "{}",
            f.message
        );
        assert_eq!(
            kubelet_port(&facts(GUIDE, Origin::IptablesNft, weave()), &ctx())
                .unwrap()
                .status,
            Status::Fail
        );
    }

    #[test]
    fn guessed_pod_ranges_only_warn_and_unknown_rules_warn() {
        let f = apiserver_port(&facts(GUIDE, Origin::IptablesNft, None), &ctx()).unwrap();
        // 10.32/12 could arrive on weave (accepted) or not: the interface is unknown, so not a pass.
        assert_eq!(f.status, Status::Warn, "{f:?}");
        let rules =
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set k8s src -j ACCEPT\nCOMMIT\n";
        let f = kubelet_port(&facts(rules, Origin::IptablesNft, None), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("-m set --match-set k8s src"),
            "{}",
            f.message
        );
    }

    #[test]
    fn centos7_forward_reject_fails_routed_pod_traffic_with_a_forward_accept() {
        let f = forward(&facts(CENTOS7, Origin::IptablesNft, weave()), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(
            f.message.contains(
                "routed pod traffic: tcp from 10.32.0.0/12 in on weave to 10.32.0.0/12 out on weave"
            ) && f.message.contains(
                "filter/FORWARD #1: -A FORWARD -j REJECT --reject-with icmp-host-prohibited"
            ),
            "{}",
            f.message
        );
        let r = f.remediation.unwrap();
        assert!(
            r.contains("iptables -I FORWARD 1 -s 10.32.0.0/12 -d 10.32.0.0/12 -j ACCEPT"),
            "{r}"
        );
        // The API server path is a different chain: the guide's rules open it, FORWARD stays shut.
        assert_eq!(
            apiserver_port(&facts(GUIDE, Origin::IptablesNft, weave()), &ctx())
                .unwrap()
                .status,
            Status::Pass
        );
        // With the accept in place, all five routed paths pass.
        let open = CENTOS7.replace(
            "-A FORWARD -j REJECT",
            "-A FORWARD -s 10.32.0.0/12 -d 10.32.0.0/12 -j ACCEPT\n-A FORWARD -j REJECT",
        );
        let f = forward(&facts(&open, Origin::IptablesNft, weave()), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.message.contains("all 5 paths"), "{}", f.message);
        // No CNI yet: the default ranges only warn.
        let f = forward(&facts(CENTOS7, Origin::IptablesNft, None), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn, "{f:?}");
    }

    #[test]
    fn a_sliver_accept_fails_naming_the_rule() {
        let rules = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m mac --mac-source 52:54:00:12:34:56 -j ACCEPT\nCOMMIT\n";
        let f = kubelet_port(&facts(rules, Origin::IptablesNft, None), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(f.message.contains("dropped by iptables-nft filter/INPUT policy: :INPUT DROP (past iptables-nft filter/INPUT #1: -A INPUT -p tcp -m mac --mac-source 52:54:00:12:34:56 -j ACCEPT"), "{}", f.message);
        assert!(f.remediation.unwrap().contains("iptables -I INPUT 1 "));
    }

    /// Live rules beside saved ones: a live REJECT fails whatever the file says (the file's ACCEPT is named);
    /// a live accept that the file would not keep is a warn; a part that could not be read is never a pass.
    #[test]
    fn live_and_saved_rules_disagree() {
        const OPEN: &str = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 10250 -j ACCEPT\nCOMMIT\n";
        const SHUT: &str = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 10250 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
        let with_saved = |live: &str, saved: &str| {
            let mut f = facts(live, Origin::IptablesLegacy, None);
            if let Some(fw) = f.get_mut(&FIREWALL) {
                fw.saved = Some(Saved {
                    rules: iptables::parse(saved, Origin::IptablesSaved, Family::Ip).unwrap(),
                    sources: vec!["/etc/sysconfig/iptables: 1 rules".into()],
                });
            }
            f
        };
        let f = kubelet_port(&with_saved(SHUT, OPEN), &ctx()).unwrap();
        assert_eq!(f.status, Status::Fail, "{f:?}");
        assert!(f.message.contains("rejected by iptables-legacy filter/INPUT #1"), "{}", f.message);
        assert!(
            f.evidence.iter().any(|e| e.starts_with("the saved rules (/etc/sysconfig/iptables: 1 rules) disagree") && e.contains("they accept it")),
            "{:?}",
            f.evidence
        );
        let f = kubelet_port(&with_saved(OPEN, SHUT), &ctx()).unwrap();
        assert_eq!(f.status, Status::Warn, "{f:?}");
        assert!(f.message.contains("accepted by the live rules, but the saved rules (/etc/sysconfig/iptables: 1 rules) reject it by saved iptables file filter/INPUT #1") || f.message.contains("not persisted"), "{}", f.message);
        let f = kubelet_port(&with_saved(OPEN, OPEN), &ctx()).unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence.iter().any(|e| e.contains("decide these paths the same way")));
        let mut part = facts(OPEN, Origin::IptablesLegacy, None);
        if let Some(fw) = part.get_mut(&FIREWALL) {
            fw.problems.push("nft -j list ruleset: EPERM".into());
        }
        let f = kubelet_port(&part, &ctx()).unwrap();
        assert_eq!(f.status, Status::Error, "{f:?}");
        assert!(f.message.contains("only partly be read"), "{}", f.message);
        // Still a fail when what was read blocks.
        let mut part = facts(SHUT, Origin::IptablesLegacy, None);
        if let Some(fw) = part.get_mut(&FIREWALL) {
            fw.problems.push("nft -j list ruleset: EPERM".into());
        }
        assert_eq!(kubelet_port(&part, &ctx()).unwrap().status, Status::Fail);
    }

    /// firewall.manager says when no process could be seen, rather than "no firewalld process".
    #[test]
    fn a_manager_pass_names_where_processes_were_looked_for() {
        let mut f = facts(CENTOS7, Origin::IptablesLegacy, None);
        let m = manager(&f, &ctx()).unwrap();
        assert!(m.message.contains("no running process could be seen"), "{m:?}");
        if let Some(fw) = f.get_mut(&FIREWALL) {
            fw.processes = vec![("/host/proc".into(), 0), ("/proc".into(), 42)];
        }
        let m = manager(&f, &ctx()).unwrap();
        assert_eq!(m.message, "neither firewalld nor ufw is active");
        assert!(m.evidence.iter().any(|e| e == "processes looked at: /host/proc (0), /proc (42)"), "{m:?}");
    }

    #[test]
    fn managers_and_backends() {
        let mut f = facts(CENTOS7, Origin::IptablesLegacy, None);
        assert_eq!(manager(&f, &ctx()).unwrap().status, Status::Pass);
        assert_eq!(backend(&f, &ctx()).unwrap().status, Status::Pass);
        if let Some(fw) = f.get_mut(&FIREWALL) {
            fw.managers.push(Manager {
                name: "ufw".into(),
                evidence: "/etc/ufw/ufw.conf: ENABLED=yes".into(),
            });
            let more = iptables::parse(
                "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n",
                Origin::IptablesNft,
                Family::Ip,
            )
            .unwrap();
            fw.rules.as_mut().unwrap().extend(more);
        }
        let m = manager(&f, &ctx()).unwrap();
        assert_eq!(
            (m.status, m.evidence[0].as_str()),
            (Status::Warn, "/etc/ufw/ufw.conf: ENABLED=yes")
        );
        assert_eq!(backend(&f, &ctx()).unwrap().status, Status::Warn);
        if let Some(fw) = f.get_mut(&FIREWALL) {
            fw.live = false;
        }
        assert_eq!(backend(&f, &ctx()).unwrap().status, Status::Skip);
    }
}
