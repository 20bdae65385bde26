//! The cluster checks: pure functions from [`ClusterFacts`] to findings.

use std::collections::BTreeMap;

use super::{
    ApiFacts, CLUSTER, ClusterFacts, DnsProbe, LOCAL_BINARIES, LocalVersions, Needs,
    nodes::{MAX_GROUPS, Sample, Versions},
    version::{Version, kubelet_skew},
};
use crate::core::{
    check::{CheckDef, Ctx, Finding, Outcome},
    config::Selection,
    facts::{FactError, get},
    source::Facts,
};

pub const CHECKS: &[CheckDef] = &[
    CheckDef {
        id: "cluster.api-reachable",
        needs: &[&CLUSTER],
        run: api_reachable,
    },
    CheckDef {
        id: "version.kubectl-skew",
        needs: &[&CLUSTER, &LOCAL_BINARIES],
        run: kubectl_skew,
    },
    CheckDef {
        id: "version.kubelet-skew",
        needs: &[&CLUSTER],
        run: kubelet_skew_check,
    },
    CheckDef {
        id: "version.local-binaries",
        needs: &[&LOCAL_BINARIES, &CLUSTER],
        run: local_binaries,
    },
    CheckDef {
        id: "token.expiry",
        needs: &[&CLUSTER],
        run: token_expiry,
    },
    CheckDef {
        id: "cluster.nodes-ready",
        needs: &[&CLUSTER],
        run: nodes_ready,
    },
    CheckDef {
        id: "cluster.dns",
        needs: &[&CLUSTER],
        run: dns,
    },
    CheckDef {
        id: "cluster.cni",
        needs: &[&CLUSTER],
        run: cni,
    },
    CheckDef {
        id: "cluster.dashboard-admin",
        needs: &[&CLUSTER],
        run: dashboard_admin,
    },
];

/// What each cluster check reads of the API: the lists [`super::gather`] fetches for a selection
/// (all of them read `/version`; the local binaries are the [`LOCAL_BINARIES`] source).
pub fn needs(id: &str) -> Needs {
    let none = Needs::default();
    match id {
        "cluster.api-reachable" | "version.kubectl-skew" | "version.local-binaries" => none,
        "version.kubelet-skew" | "cluster.nodes-ready" => Needs {
            nodes: true,
            ..none
        },
        "token.expiry" => Needs {
            tokens: true,
            ..none
        },
        // The nodes say whether this host is one of them (then the Service IP is reachable).
        "cluster.dns" => Needs {
            dns: true,
            nodes: true,
            ..none
        },
        "cluster.cni" => Needs {
            daemonsets: true,
            cni_conf: true,
            ..none
        },
        "cluster.dashboard-admin" => Needs {
            admin_bindings: true,
            ..none
        },
        _ => Needs::ALL,
    }
}

/// The inputs the cluster checks that `selection` selects read.
pub fn selected(selection: &Selection) -> Needs {
    CHECKS
        .iter()
        .filter(|c| selection.selects(c.id))
        .fold(Needs::default(), |n, c| n.union(needs(c.id)))
}

/// The API's answers, or an error naming the layer that failed (cluster.api-reachable says more).
fn api(f: &Facts) -> Result<(&ClusterFacts, &ApiFacts), FactError> {
    let c = f.get(&CLUSTER)?;
    match &c.api {
        Ok(a) => Ok((c, a)),
        Err(e) => Err(FactError::Unreadable(format!(
            "the API server {} could not be used ({}): {}",
            e.server,
            e.layer.as_str(),
            e.message
        ))),
    }
}

fn server_version(a: &ApiFacts) -> Result<Version, FactError> {
    Version::parse(&a.version).ok_or_else(|| {
        FactError::Unreadable(format!(
            "the API server reported an unparseable version {:?}",
            a.version
        ))
    })
}

/// `key: a, b, c (+N more)` lines, one per key: the sampled names, then how many more there are.
fn grouped(items: &BTreeMap<String, Sample>) -> Vec<String> {
    items
        .iter()
        .map(|(k, s)| {
            let mut line = format!("{k}: {}", s.names.join(", "));
            let more = s.count.saturating_sub(s.names.len());
            if more > 0 {
                line.push_str(&format!(" (+{more} more)"));
            }
            line
        })
        .collect()
}

/// Adds a group under its evidence text (texts that read the same share a line).
fn put(map: &mut BTreeMap<String, Sample>, key: String, s: &Sample) {
    if s.count > 0 {
        map.entry(key).or_default().merge(s);
    }
}

/// One component's version groups, split into (breaks the skew policy, within it).
fn judge(
    what: &str,
    v: &Versions,
    server: Version,
    bad: &mut BTreeMap<String, Sample>,
    ok: &mut BTreeMap<String, Sample>,
) {
    for (raw, s) in &v.by_version.groups {
        match Version::parse(raw).map_or(Some("unparseable version".into()), |c| {
            kubelet_skew(server, c)
        }) {
            Some(why) => put(bad, format!("{what} {raw}: {why}"), s),
            None => put(ok, format!("{what} {raw}"), s),
        }
    }
    // Past MAX_GROUPS versions only the span is kept; the policy is an interval, so its ends decide.
    let over = &v.by_version.overflow;
    let mut why: Vec<String> = v
        .overflow_span
        .iter()
        .flat_map(|(lo, hi)| [*lo, *hi])
        .filter_map(|c| kubelet_skew(server, c))
        .collect();
    why.dedup();
    if v.overflow_unparseable > 0 {
        why.push(format!("{} unparseable", v.overflow_unparseable));
    }
    let span = v
        .overflow_span
        .map_or("no parseable one".into(), |(lo, hi)| {
            format!("{lo} to {hi}")
        });
    let key = format!("{what} at further versions (past {MAX_GROUPS} distinct, {span})");
    if why.is_empty() {
        put(ok, key, over);
    } else {
        put(bad, format!("{key}: some {}", why.join("; ")), over);
    }
}

fn api_reachable(f: &Facts, _: &Ctx) -> Outcome {
    let c = f.get(&CLUSTER)?;
    let ctx = c
        .context
        .as_deref()
        .map_or(String::new(), |x| format!(", context {x}"));
    Ok(match &c.api {
        Err(e) => Finding::fail(format!("{} failed talking to {}: {}", e.layer.as_str(), e.server, e.message))
            .evidence(format!("server {}{ctx}", e.server))
            .evidence(format!("failing layer: {}", e.layer.as_str())),
        Ok(a) if !a.denied.is_empty() => Finding::warn(format!(
            "{} answers (Kubernetes {}), but RBAC denied {} request(s) the checks need",
            c.server,
            a.version,
            a.denied.len()
        ))
        .evidence(format!("server {}{ctx}", c.server))
        .evidence_all(a.denied.iter().map(|d| format!("403 Forbidden: {d}")))
        .remediation("grant the kubeconfig's user get/list on the resources named (or run with an admin kubeconfig)"),
        Ok(a) => Finding::pass(format!("{} answers: Kubernetes {}{ctx}", c.server, a.version))
            .evidence(format!("GET {}/version → {}", c.server.trim_end_matches('/'), a.version)),
    })
}

fn kubectl_skew(f: &Facts, _: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let server = server_version(a)?;
    let raw = f
        .get(&LOCAL_BINARIES)?
        .kubectl
        .as_ref()
        .map_err(|e| FactError::Missing(format!("no kubectl here: {e}")))?;
    let client = Version::parse(raw).ok_or_else(|| {
        FactError::Unreadable(format!("kubectl printed an unparseable version {raw:?}"))
    })?;
    let ev = [
        format!("kubectl {raw} (kubectl version --client)"),
        format!("API server {}", a.version),
    ];
    Ok(match client.minors_to(server) {
        Some(d) if d.abs() <= 1 => Finding::pass(format!(
            "kubectl {raw} is within ±1 minor of the server {}",
            a.version
        ))
        .evidence_all(ev),
        d => {
            let how = match d {
                Some(d) if d > 0 => format!("{d} minors older than"),
                Some(d) => format!("{} minors newer than", -d),
                None => "a different major version from".into(),
            };
            Finding::fail(format!(
                "kubectl {raw} is {how} the server {} (supported: ±1 minor); a client too old for the manifests fails like the guide's dashboard: no kind \"Role\" is registered for version \"rbac.authorization.k8s.io/v1\"",
                a.version
            ))
            .evidence_all(ev)
            .remediation(format!(
                "install kubectl v{}.{} (the server's minor), e.g. from pkgs.k8s.io/core:/stable:/v{}.{}",
                server.major, server.minor, server.major, server.minor
            ))
        }
    })
}

fn kubelet_skew_check(f: &Facts, _: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let server = server_version(a)?;
    let nodes = get(&a.nodes)?;
    if nodes.total == 0 {
        return Ok(Finding::skip("the cluster has no nodes"));
    }
    let mut bad = BTreeMap::new();
    let mut ok = BTreeMap::new();
    judge("kubelet", &nodes.kubelet, server, &mut bad, &mut ok);
    judge("kube-proxy", &nodes.kube_proxy, server, &mut bad, &mut ok);
    let max = super::version::kubelet_max_lag(server);
    Ok(if bad.is_empty() {
        Finding::pass(format!(
            "all {} nodes' kubelet and kube-proxy are within the skew policy of the server {} (never newer, at most {max} minors older)",
            nodes.total,
            a.version
        ))
        .evidence_all(grouped(&ok))
    } else {
        let count: usize = bad.values().map(|s| s.count).sum();
        Finding::fail(format!(
            "{count} node component(s) break the version-skew policy against the server {} (never newer, at most {max} minors older)",
            a.version
        ))
        .evidence_all(grouped(&bad))
        .remediation(format!(
            "upgrade those nodes one minor at a time (kubeadm upgrade node, then the kubelet package) toward v{}.{}; never run a kubelet newer than the API server",
            server.major, server.minor
        ))
    })
}

/// Needs no cluster: the API server's version, when there is one, is one more to compare with.
fn local_binaries(f: &Facts, _: &Ctx) -> Outcome {
    let LocalVersions {
        kubectl,
        kubeadm,
        kubelet,
    } = f.get(&LOCAL_BINARIES)?;
    let installed: Vec<(&str, Version, &str)> = [
        ("kubeadm", kubeadm),
        ("kubelet", kubelet),
        ("kubectl", kubectl),
    ]
    .into_iter()
    .filter_map(|(n, r)| {
        let raw = r.as_ref().ok()?;
        Some((n, Version::parse(raw)?, raw.as_str()))
    })
    .collect();
    let server = f
        .get(&CLUSTER)
        .ok()
        .and_then(|c| c.api.as_ref().ok())
        .and_then(|a| Version::parse(&a.version).map(|v| (v, a.version.clone())));
    let mut ev: Vec<String> = [
        ("kubeadm", kubeadm),
        ("kubelet", kubelet),
        ("kubectl", kubectl),
    ]
    .iter()
    .map(|(n, r)| match r {
        Ok(v) => format!("{n} {v}"),
        Err(e) => format!("{n}: {e}"),
    })
    .collect();
    if let Some((_, raw)) = &server {
        ev.push(format!("API server {raw}"));
    }
    if installed.is_empty() || (installed.len() == 1 && server.is_none()) {
        return Ok(Finding::skip(match installed.first() {
            Some((n, _, raw)) => {
                format!("only {n} {raw} is installed and no API server to compare with")
            }
            None => "none of kubeadm, kubelet, kubectl is installed here".into(),
        })
        .evidence_all(ev));
    }
    let mut problems = Vec::new();
    let pick = |name: &str| installed.iter().find(|(n, _, _)| *n == name);
    if let (Some(a), Some(l)) = (pick("kubeadm"), pick("kubelet"))
        && (a.1.major, a.1.minor) != (l.1.major, l.1.minor)
    {
        problems.push(format!(
            "kubeadm {} and kubelet {} are different minors",
            a.2, l.2
        ));
    }
    if let Some(k) = pick("kubectl") {
        for other in installed.iter().filter(|(n, _, _)| *n != "kubectl") {
            if k.1.minors_to(other.1).is_none_or(|d| d.abs() > 1) {
                problems.push(format!(
                    "kubectl {} is more than one minor from {} {}",
                    k.2, other.0, other.2
                ));
            }
        }
    }
    let mut note = String::new();
    if let Some((sv, raw)) = &server {
        for (n, v, r) in installed.iter().filter(|(n, _, _)| *n != "kubectl") {
            match v.minors_to(*sv) {
                Some(0) if v.patch != sv.patch => {
                    note = format!(
                        "; {n} {r} and the control plane {raw} differ in patch only: kubeadm init picks the newest patch of the requested minor, so its \"[init] Using Kubernetes version\" line can be newer than the packages"
                    )
                }
                Some(0) => {}
                Some(d) if d < 0 => {
                    problems.push(format!("{n} {r} is newer than the API server {raw}"))
                }
                _ if *n == "kubelet" && kubelet_skew(*sv, *v).is_none() => {}
                _ => problems.push(format!(
                    "{n} {r} is a different minor from the API server {raw}"
                )),
            }
        }
    }
    Ok(if problems.is_empty() {
        Finding::pass(format!("the installed Kubernetes binaries agree{note}")).evidence_all(ev)
    } else {
        Finding::warn(format!("{}{note}", problems.join("; ")))
            .evidence_all(ev)
            .remediation("install kubeadm, kubelet and kubectl of the same minor as the control plane (apt-get install kubeadm=1.X.Y-* kubelet=1.X.Y-* kubectl=1.X.Y-*; apt-mark hold them)")
    })
}

fn human(d: jiff::SignedDuration) -> String {
    let s = d.as_secs().abs();
    match s {
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d", s / 86400),
    }
}

fn token_expiry(f: &Facts, ctx: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let tokens = get(&a.tokens)?;
    let now = jiff::Timestamp::try_from(ctx.now).unwrap_or_else(|_| jiff::Timestamp::now());
    let hour = jiff::SignedDuration::from_hours(1);
    let mut ev = Vec::new();
    let mut forever = Vec::new();
    let mut best: Option<jiff::SignedDuration> = None;
    for t in tokens {
        let usages = if t.usages.is_empty() {
            "none".to_string()
        } else {
            t.usages.join(",")
        };
        let state = match &t.expiration {
            None => {
                forever.push(t.id.clone());
                best = Some(jiff::SignedDuration::MAX);
                "never expires".to_string()
            }
            Some(raw) => match raw.parse::<jiff::Timestamp>() {
                Ok(exp) if exp > now => {
                    let left = exp.duration_since(now);
                    best = best.max(Some(left));
                    format!("expires {exp} (in {})", human(left))
                }
                Ok(exp) => format!("EXPIRED {exp} ({} ago)", human(now.duration_since(exp))),
                Err(_) => format!("expiration {raw:?} is unparseable: counts as expired"),
            },
        };
        ev.push(format!("token {}.<secret>: {state}; usages {usages}", t.id));
    }
    let create = "kubeadm token create --print-join-command";
    Ok(if best.is_none_or(|b| b <= hour) {
        let msg = if tokens.is_empty() {
            "no bootstrap token exists: the next kubeadm join will fail".to_string()
        } else {
            format!(
                "no bootstrap token is valid for longer than 1 h ({} token(s), all expired or about to): the next kubeadm join will fail",
                tokens.len()
            )
        };
        Finding::warn(msg).evidence_all(ev).remediation(create)
    } else if !forever.is_empty() {
        Finding::warn(format!(
            "token(s) {} never expire: anyone who ever saw the join command can join a node",
            forever.join(", ")
        ))
        .evidence_all(ev)
        .remediation(format!(
            "kubeadm token delete {} once the nodes have joined; create short-lived ones with {create}",
            forever.join(" ")
        ))
    } else {
        Finding::pass(format!(
            "a bootstrap token is valid for {}",
            human(best.unwrap_or_default())
        ))
        .evidence_all(ev)
    })
}

fn nodes_ready(f: &Facts, _: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let nodes = get(&a.nodes)?;
    if nodes.total == 0 {
        return Ok(Finding::fail("the cluster has no nodes registered"));
    }
    let mut not_ready = BTreeMap::new();
    for (state, s) in &nodes.not_ready.groups {
        let key = match state {
            Some((s, reason, msg)) => format!("NotReady (Ready={s}, {reason}: {msg})"),
            None => "NotReady (no Ready condition yet)".into(),
        };
        put(&mut not_ready, key, s);
    }
    put(
        &mut not_ready,
        format!("NotReady (further reasons, past {MAX_GROUPS} distinct)"),
        &nodes.not_ready.overflow,
    );
    let mut pressure = BTreeMap::new();
    for ((t, reason, msg), s) in &nodes.pressure.groups {
        put(&mut pressure, format!("{t} ({reason}: {msg})"), s);
    }
    put(
        &mut pressure,
        format!("pressure (further reasons, past {MAX_GROUPS} distinct)"),
        &nodes.pressure.overflow,
    );
    let nr = nodes.not_ready.count();
    let mut ev = grouped(&not_ready);
    ev.extend(grouped(&pressure));
    Ok(if nr > 0 {
        Finding::fail(format!("{nr} of {} node(s) are NotReady", nodes.total))
            .evidence_all(ev)
            .remediation("on each node: systemctl status kubelet; journalctl -u kubelet -n 50 (a NotReady node with a running kubelet usually lacks its pod network: see cluster.cni)")
    } else if !pressure.is_empty() {
        Finding::warn(format!(
            "all {} node(s) are Ready, but some report pressure",
            nodes.total
        ))
        .evidence_all(ev)
        .remediation(
            "free memory/disk/PIDs on the nodes named; the kubelet evicts pods under pressure",
        )
    } else {
        Finding::pass(format!(
            "all {} node(s) are Ready with no pressure",
            nodes.total
        ))
    })
}

fn dns(f: &Facts, _: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let pods = get(&a.dns_pods)?;
    let mut ev = Vec::new();
    let mut broken = 0;
    let mut restarting = 0;
    for p in pods {
        for c in &p.containers {
            let mut line = format!(
                "pod kube-system/{} ({}) container {}: ready={}, restarts={}",
                p.name, p.phase, c.name, c.ready, c.restarts
            );
            if let Some(w) = &c.waiting {
                line.push_str(&format!(", waiting: {w}"));
            }
            if let Some(t) = &c.last_terminated {
                line.push_str(&format!(", last terminated: {t}"));
            }
            ev.push(line);
            if c.restarts > 0 {
                restarting += 1;
            }
        }
        if !p.ready {
            broken += 1;
        }
    }
    let probe = match &a.dns_probe {
        DnsProbe::NotRun(why) => {
            ev.push(format!("resolution probe not run: {why}"));
            None
        }
        DnsProbe::Resolved { server, addrs } => {
            ev.push(format!(
                "{} via {server} → {}",
                super::PROBE_NAME,
                addrs.join(", ")
            ));
            Some(Ok(()))
        }
        DnsProbe::Failed { server, error } => {
            ev.push(format!(
                "{} via {server} failed: {error}",
                super::PROBE_NAME
            ));
            Some(Err(format!(
                "resolving {} via {server} failed: {error}",
                super::PROBE_NAME
            )))
        }
    };
    let fix = "kubectl -n kube-system logs -l k8s-app=kube-dns --previous; a CoreDNS loop (plugin/loop) means the node's resolv.conf points at a local stub resolver: give the kubelet a resolvConf with real upstreams (see dns.loopback-nameserver)";
    if pods.is_empty() {
        return Ok(
            Finding::fail("no CoreDNS/kube-dns pods (k8s-app=kube-dns) in kube-system")
                .evidence_all(ev)
                .remediation("kubeadm init phase addon coredns"),
        );
    }
    Ok(if broken > 0 {
        Finding::fail(format!(
            "{broken} of {} CoreDNS/kube-dns pod(s) are not ready",
            pods.len()
        ))
        .evidence_all(ev)
        .remediation(fix)
    } else if let Some(Err(e)) = probe {
        Finding::fail(e).evidence_all(ev).remediation(fix)
    } else if restarting > 0 {
        Finding::warn(format!(
            "CoreDNS/kube-dns is ready but {restarting} container(s) have restarted"
        ))
        .evidence_all(ev)
        .remediation(fix)
    } else {
        let how = if probe.is_some() {
            ", and kube-dns resolves the API server's name"
        } else {
            ""
        };
        Finding::pass(format!("{} CoreDNS/kube-dns pod(s) ready{how}", pods.len())).evidence_all(ev)
    })
}

/// Known pod networks: daemonset name prefix, CNI, and whether it carries multicast (FACTS.md).
const CNIS: &[(&str, &str, &str)] = &[
    (
        "weave-net",
        "Weave Net",
        "carries multicast (project archived in 2024)",
    ),
    ("calico-node", "Calico", "does not carry multicast"),
    (
        "cilium",
        "Cilium",
        "multicast is beta (vxlan mode, explicit enablement)",
    ),
    ("kube-flannel", "Flannel", "does not carry multicast"),
    ("antrea-agent", "Antrea", "carries multicast (IPv4)"),
    ("kube-ovn-cni", "Kube-OVN", "carries multicast per subnet"),
    (
        "ovnkube-node",
        "OVN-Kubernetes",
        "carries multicast per namespace annotation",
    ),
];

fn cni(f: &Facts, _: &Ctx) -> Outcome {
    let (c, a) = api(f)?;
    let ds = get(&a.daemonsets)?;
    let found: Vec<_> = ds
        .iter()
        .filter_map(|d| {
            CNIS.iter()
                .find(|(p, _, _)| d.name.starts_with(p))
                .map(|cni| (d, cni))
        })
        .filter(|(d, _)| d.name != "cilium-operator")
        .collect();
    let conf = c
        .cni_conf
        .as_ref()
        .map(|v| v.join(", "))
        .unwrap_or_else(|e| e.to_string());
    let mut ev: Vec<String> = found
        .iter()
        .map(|(d, (_, name, _))| {
            format!(
                "{name}: daemonset {}/{} desired {}, ready {}, updated {}, available {}",
                d.namespace, d.name, d.desired, d.ready, d.updated, d.available
            )
        })
        .collect();
    ev.push(format!(
        "/etc/cni/net.d: {}",
        if conf.is_empty() { "no config" } else { &conf }
    ));
    if found.is_empty() {
        return Ok(if c.cni_conf.as_ref().is_ok_and(|v| !v.is_empty()) {
            Finding::pass(format!("a pod network is configured on this node ({conf}); its daemonset is not one this check knows")).evidence_all(ev)
        } else {
            Finding::fail("no pod network is deployed: no known CNI daemonset and no config in /etc/cni/net.d; nodes stay NotReady and CoreDNS Pending")
                .evidence_all(ev)
                .remediation("kubectl apply -f <your CNI's manifest> (Weave Net, Calico, Flannel, Cilium ...)")
        });
    }
    let lagging: Vec<String> = found
        .iter()
        .filter(|(d, _)| d.ready < d.desired || d.updated < d.desired || d.available < d.desired)
        .map(|(d, _)| {
            format!(
                "{}/{} ({} of {} ready)",
                d.namespace, d.name, d.ready, d.desired
            )
        })
        .collect();
    let multicast: Vec<String> = found
        .iter()
        .map(|(_, (_, name, mc))| format!("{name} {mc}"))
        .collect();
    let mc = multicast.join("; ");
    Ok(if lagging.is_empty() {
        Finding::pass(format!("pod network rolled out; {mc}")).evidence_all(ev)
    } else {
        Finding::fail(format!("pod network not fully rolled out: {}; {mc}", lagging.join(", ")))
            .evidence_all(ev)
            .remediation("kubectl -n <namespace> describe daemonset <name>; kubectl -n <namespace> logs <pod> -c <container> on the nodes whose pods are not ready (firewalled overlay ports are the usual cause: Weave TCP 6783 and UDP 6783-6784, Flannel and Cilium UDP 8472, Calico TCP 179; see https://kubernetes.io/docs/reference/networking/ports-and-protocols/ and your CNI's requirements page)")
    })
}

fn dashboard_admin(f: &Facts, _: &Ctx) -> Outcome {
    let (_, a) = api(f)?;
    let b = get(&a.admin_bindings)?;
    Ok(if b.is_empty() {
        Finding::pass("no ServiceAccount is bound to cluster-admin by a ClusterRoleBinding")
    } else {
        Finding::warn(format!(
            "{} ServiceAccount(s) bound to cluster-admin: whoever holds their token owns the cluster",
            b.len()
        ))
        .evidence_all(b.iter().map(|x| format!("ClusterRoleBinding {} → ServiceAccount {}", x.binding, x.account)))
        .remediation(format!(
            "bind a narrower role instead, e.g. kubectl delete clusterrolebinding {} && kubectl create rolebinding ... --clusterrole=view (or edit) in the namespaces it needs",
            b[0].binding
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        core::check::{Role, Status},
        checks::cluster::{AdminBinding, DaemonSetInfo, NodeSummary, TokenInfo},
    };

    fn api_facts() -> ApiFacts {
        ApiFacts {
            version: "v1.33.2".into(),
            nodes: Ok(NodeSummary::default()),
            tokens: Ok(vec![]),
            dns_pods: Ok(vec![]),
            dns_service_ip: Ok(None),
            dns_probe: DnsProbe::NotRun("test".into()),
            daemonsets: Ok(vec![]),
            admin_bindings: Ok(vec![]),
            denied: vec![],
        }
    }

    fn run(
        check: fn(&Facts, &Ctx) -> Outcome,
        a: ApiFacts,
        local: [Result<String, String>; 3],
        cni: Vec<String>,
    ) -> Finding {
        let [kubectl, kubeadm, kubelet] = local;
        let facts = Facts::default()
            .with(
                &CLUSTER,
                Ok(ClusterFacts {
                    server: "https://10.0.0.1:6443".into(),
                    context: Some("ctx".into()),
                    api: Ok(a),
                    cni_conf: Ok(cni),
                }),
            )
            .with(
                &LOCAL_BINARIES,
                Ok(LocalVersions {
                    kubectl,
                    kubeadm,
                    kubelet,
                }),
            );
        let ctx = Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        };
        crate::core::engine::evaluate(
            &CheckDef {
                id: "t",
                needs: &[&CLUSTER, &LOCAL_BINARIES],
                run: check,
            },
            &facts,
            &ctx,
        )
    }

    fn none() -> [Result<String, String>; 3] {
        [Err("no".into()), Err("no".into()), Err("no".into())]
    }

    fn token(id: &str, exp: Option<jiff::Timestamp>) -> TokenInfo {
        TokenInfo {
            id: id.into(),
            expiration: exp.map(|t| t.to_string()),
            usages: vec!["authentication".into()],
            description: None,
        }
    }

    #[test]
    fn tokens_warn_without_a_valid_one_or_with_one_that_never_expires() {
        let now = jiff::Timestamp::now();
        let h = jiff::SignedDuration::from_hours;
        let tok = |t: Vec<TokenInfo>| {
            run(
                token_expiry,
                ApiFacts {
                    tokens: Ok(t),
                    ..api_facts()
                },
                none(),
                vec![],
            )
        };
        assert_eq!(tok(vec![]).status, Status::Warn);
        assert_eq!(
            tok(vec![token(
                "aaaaaa",
                Some(now + jiff::SignedDuration::from_mins(30))
            )])
            .status,
            Status::Warn
        );
        let f = tok(vec![
            token("aaaaaa", Some(now - h(1))),
            token("bbbbbb", Some(now + h(5))),
        ]);
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.evidence[0].contains("aaaaaa.<secret>: EXPIRED"), "{f:?}");
        let f = tok(vec![token("cccccc", None)]);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message.contains("cccccc") && f.message.contains("never expire"),
            "{f:?}"
        );
        let mut bad = token("dddddd", None);
        bad.expiration = Some("tomorrow".into());
        let f = tok(vec![bad]);
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.evidence[0].contains("unparseable: counts as expired"),
            "{f:?}"
        );
    }

    /// Nodes (name, kubelet and kube-proxy version, (type, status) conditions) as gathering folds them.
    type TestNode<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn fold(list: &[TestNode]) -> NodeSummary {
        let mut s = NodeSummary::default();
        for (name, v, conds) in list {
            let c: Vec<_> = conds.iter().map(|(t, st)| (*t, *st, "R", "M")).collect();
            s.add(name, v, v, &c);
        }
        s
    }

    #[test]
    fn kubelet_skew_groups_many_nodes_by_version() {
        let names: Vec<String> = (0..25).map(|i| format!("n{i:02}")).collect();
        let list: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), "v1.28.0", &[][..]))
            .collect();
        let nodes = fold(&list);
        let f = run(
            kubelet_skew_check,
            ApiFacts {
                nodes: Ok(nodes),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert_eq!(f.status, Status::Fail);
        assert_eq!(
            f.evidence.len(),
            2,
            "one line per component and version: {f:?}"
        );
        assert!(
            f.evidence[1].starts_with("kubelet v1.28.0: 5 minors older")
                && f.evidence[1].ends_with("n09 (+15 more)"),
            "{f:?}"
        );
        let f = run(
            kubelet_skew_check,
            ApiFacts {
                nodes: Ok(fold(&[("new", "v1.34.0", &[])])),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert!(f.evidence[0].contains("newer than the API server"), "{f:?}");
    }

    #[test]
    fn past_the_group_bound_evidence_says_how_many_more_and_verdicts_hold() {
        let mut s = NodeSummary::default();
        for i in 0..600 {
            let name = format!("n{i:03}");
            // 60 distinct versions v1.30.0 .. v1.30.59 (all within the policy) until the last one.
            let v = if i == 599 {
                "v1.34.0".to_string()
            } else {
                format!("v1.30.{}", i % 60)
            };
            let msg = format!("PLEG not healthy for {i}s");
            s.add(
                &name,
                &v,
                "",
                &[("Ready", "False", "KubeletNotReady", &msg)],
            );
        }
        let with = |n: &NodeSummary| ApiFacts {
            nodes: Ok(n.clone()),
            ..api_facts()
        };
        let f = run(kubelet_skew_check, with(&s), none(), vec![]);
        assert_eq!(f.status, Status::Fail, "{f:?}");
        let last = f.evidence.last().unwrap();
        assert!(
            last.starts_with("kubelet at further versions (past 50 distinct, v1.30.50 to v1.34.0): some newer than the API server")
                && last.ends_with("(+90 more)"),
            "{last}"
        );
        let f = run(nodes_ready, with(&s), none(), vec![]);
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.message, "600 of 600 node(s) are NotReady");
        assert_eq!(f.evidence.len(), MAX_GROUPS + 1, "{f:?}");
        assert!(
            f.evidence.iter().any(|e| e
                .starts_with("NotReady (further reasons, past 50 distinct): n050, n051")
                && e.ends_with("(+540 more)")),
            "{f:?}"
        );
    }

    #[test]
    fn every_check_names_what_it_reads_and_only_kubectl_checks_run_kubectl() {
        let mut all = Needs::default();
        for c in CHECKS {
            all = all.union(needs(c.id));
            assert_ne!(needs(c.id), Needs::ALL, "{} has no entry in needs()", c.id);
            let local = c.needs.iter().any(|s| s.name() == LOCAL_BINARIES.name);
            assert_eq!(
                local,
                c.id == "version.kubectl-skew" || c.id == "version.local-binaries",
                "{}",
                c.id
            );
        }
        assert_eq!(all, Needs::ALL, "every input is read by some check");
        let only = |ids: &[&str]| Selection {
            only: ids.iter().map(|s| s.to_string()).collect(),
            skip: vec![],
        };
        assert_eq!(selected(&only(&["token.expiry"])), needs("token.expiry"));
        assert_eq!(selected(&Selection::default()), Needs::ALL);
    }

    #[test]
    fn pressure_warns_and_not_ready_fails() {
        let nodes = fold(&[(
            "a",
            "v1.33.2",
            &[("Ready", "True"), ("DiskPressure", "True")],
        )]);
        let f = run(
            nodes_ready,
            ApiFacts {
                nodes: Ok(nodes),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert_eq!(f.status, Status::Warn);
        assert_eq!(f.evidence, ["DiskPressure (R: M): a"]);
        let nodes = fold(&[
            ("a", "v1.33.2", &[("Ready", "False")][..]),
            ("b", "v1.33.2", &[]),
        ]);
        let f = run(
            nodes_ready,
            ApiFacts {
                nodes: Ok(nodes),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert_eq!(f.status, Status::Fail);
        assert_eq!(f.message, "2 of 2 node(s) are NotReady");
    }

    #[test]
    fn cni_from_daemonsets_or_config_and_none_fails() {
        let f = run(cni, api_facts(), none(), vec![]);
        assert_eq!(f.status, Status::Fail);
        let f = run(
            cni,
            api_facts(),
            none(),
            vec!["10-containerd-net.conflist".into()],
        );
        assert_eq!(f.status, Status::Pass, "{f:?}");
        let ds = DaemonSetInfo {
            namespace: "calico-system".into(),
            name: "calico-node".into(),
            desired: 2,
            ready: 2,
            updated: 2,
            available: 2,
        };
        let f = run(
            cni,
            ApiFacts {
                daemonsets: Ok(vec![ds]),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert_eq!(f.status, Status::Pass);
        assert!(
            f.message.contains("Calico does not carry multicast"),
            "{f:?}"
        );
    }

    #[test]
    fn local_binaries_compare_minors_and_explain_the_patch_pick() {
        let ok = |v: &str| Ok(v.to_string());
        let f = run(
            local_binaries,
            api_facts(),
            [ok("v1.33.0"), ok("v1.33.0"), ok("v1.33.0")],
            vec![],
        );
        assert_eq!(f.status, Status::Pass);
        assert!(f.message.contains("Using Kubernetes version"), "{f:?}");
        let f = run(
            local_binaries,
            api_facts(),
            [ok("v1.33.2"), ok("v1.34.1"), ok("v1.33.2")],
            vec![],
        );
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.message
                .contains("kubeadm v1.34.1 and kubelet v1.33.2 are different minors"),
            "{f:?}"
        );
        assert!(
            f.message
                .contains("kubeadm v1.34.1 is newer than the API server"),
            "{f:?}"
        );
    }

    #[test]
    fn admin_bindings_name_binding_and_account() {
        let b = AdminBinding {
            binding: "admin-user".into(),
            account: "kubernetes-dashboard/admin-user".into(),
        };
        let f = run(
            dashboard_admin,
            ApiFacts {
                admin_bindings: Ok(vec![b]),
                ..api_facts()
            },
            none(),
            vec![],
        );
        assert_eq!(f.status, Status::Warn);
        assert!(
            f.remediation
                .unwrap()
                .contains("kubectl delete clusterrolebinding admin-user")
        );
    }

    #[test]
    fn an_unusable_api_makes_dependent_checks_error_with_the_layer() {
        let facts = Facts::default().with(
            &CLUSTER,
            Ok(ClusterFacts {
                server: "https://x:6443".into(),
                context: None,
                api: Err(crate::checks::cluster::ApiFailure::timeout(
                    "https://x:6443",
                    std::time::Duration::from_secs(2),
                )),
                cni_conf: Ok(vec![]),
            }),
        );
        let ctx = Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        };
        let f = crate::core::engine::evaluate(&CHECKS[5], &facts, &ctx);
        assert_eq!(f.status, Status::Error);
        assert!(
            f.message.contains("(timeout)") && f.message.contains("--timeout"),
            "{f:?}"
        );
        let f = crate::core::engine::evaluate(&CHECKS[0], &facts, &ctx);
        assert_eq!(f.status, Status::Fail);
    }
}
