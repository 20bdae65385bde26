//! `fleet multicast`: the guide's pod-to-pod multicast test, automated. One probe pod per node (on
//! the pod network by default), the participants handed to them in a ConfigMap once every pod has
//! its IP, and every participant's view merged into one sender → receiver matrix named by node.

use std::{
    collections::BTreeMap,
    io::Write,
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};
use k8s_openapi::api::{
    core::v1::{ConfigMap, Pod, ServiceAccount},
    rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
    core::ObjectMeta,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    NodeState, Progress, api_err, compact, ensure_namespace, node_not_ready, pod, pod::PodState,
    pod_state, read_log, rejected, select_nodes, sweep_stale,
};
use crate::{mask::mask_secrets, report::status_table};

/// The service account the probe pods read their ConfigMap with (and its Role and binding).
pub const PROBE_ACCOUNT: &str = "k8sdoctor-probe";
/// The ConfigMap key that lists the participants.
pub const PEERS_KEY: &str = "peers";

/// The probe's settings, passed to every pod.
#[derive(Debug, Clone)]
pub struct McOptions {
    pub host_network: bool,
    pub group: Option<IpAddr>,
    pub port: u16,
    pub count: u64,
    pub interval_ms: f64,
    pub ttl: u8,
}

/// One node of the multicast fleet.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct McNode {
    pub name: String,
    pub state: NodeState,
    pub reason: Option<String>,
    /// The probe's address on that node (the pod IP, or the node's with --host-network).
    pub address: Option<String>,
}

/// One sender → receiver pair, named by node.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct McPair {
    pub sender_node: String,
    pub receiver_node: String,
    pub sender: String,
    pub receiver: String,
    pub sent: Option<u64>,
    pub received: u64,
    pub loss_pct: f64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_p50_ms: Option<f64>,
    pub verdict: String,
    /// The probe's cause for a failing pair, with its evidence.
    pub cause: Option<Value>,
}

/// The whole `fleet multicast` run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct McFleetReport {
    pub schema_version: String,
    pub network: String,
    pub group: Option<String>,
    pub port: u16,
    pub nodes: Vec<McNode>,
    pub pairs: Vec<McPair>,
    pub pass: bool,
}

/// Reads the participants from the run's ConfigMap, as a probe pod does (in-cluster credentials),
/// waiting up to `wait` for the CLI to write it.
pub fn peers_from_configmap(name: &str, wait: Duration) -> Result<Vec<IpAddr>> {
    let rt = super::runtime()?;
    let r = rt.block_on(async {
        let cfg = crate::core::config::Config::default();
        let (client, _) = super::client(&cfg).await?;
        let cms: Api<ConfigMap> = Api::default_namespaced(client);
        let until = Instant::now() + wait;
        loop {
            match cms.get_opt(name).await {
                Ok(Some(cm)) => {
                    let text = cm
                        .data
                        .and_then(|d| d.get(PEERS_KEY).cloned())
                        .ok_or_else(|| anyhow!("ConfigMap {name} has no {PEERS_KEY:?} key"))?;
                    return text
                        .split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| {
                            s.trim()
                                .parse::<IpAddr>()
                                .map_err(|e| anyhow!("ConfigMap {name}: {s:?}: {e}"))
                        })
                        .collect();
                }
                Ok(None) => {}
                Err(e) => return Err(api_err(&format!("get ConfigMap {name}"), e)),
            }
            if Instant::now() >= until {
                bail!(
                    "ConfigMap {name} did not appear within {:.0}s",
                    wait.as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    rt.shutdown_background();
    r
}

async fn ensure<K>(api: &Api<K>, obj: K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api.get_opt(&name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => api
            .create(&PostParams::default(), &obj)
            .await
            .map(|_| ())
            .map_err(|e| api_err(&format!("create {name}"), e)),
        Err(e) => Err(api_err(&format!("get {name}"), e)),
    }
}

/// The probe pods' identity: a service account allowed to read ConfigMaps in the namespace.
async fn ensure_account(client: &Client, ns: &str) -> Result<()> {
    let meta = || ObjectMeta {
        name: Some(PROBE_ACCOUNT.into()),
        namespace: Some(ns.into()),
        labels: Some([(pod::MANAGED_BY.0.to_string(), pod::MANAGED_BY.1.to_string())].into()),
        ..Default::default()
    };
    ensure(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        ServiceAccount {
            metadata: meta(),
            ..Default::default()
        },
    )
    .await?;
    ensure(
        &Api::<Role>::namespaced(client.clone(), ns),
        Role {
            metadata: meta(),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            }]),
        },
    )
    .await?;
    ensure(
        &Api::<RoleBinding>::namespaced(client.clone(), ns),
        RoleBinding {
            metadata: meta(),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: PROBE_ACCOUNT.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: PROBE_ACCOUNT.into(),
                namespace: Some(ns.into()),
                ..Default::default()
            }]),
        },
    )
    .await
}

struct Participant {
    node: String,
    pod: String,
    ip: Option<String>,
}

/// Runs the probe across the selected nodes and merges the views.
pub(super) async fn fan_out(
    client: &Client,
    opts: &super::FleetOptions,
    mc: &McOptions,
    run: &str,
    stop: &AtomicBool,
    progress: Progress<'_>,
) -> Result<McFleetReport> {
    let nodes = select_nodes(client, opts).await?;
    ensure_namespace(client, &opts.namespace, progress).await?;
    ensure_account(client, &opts.namespace).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &opts.namespace);
    sweep_stale(&pods, progress).await?;
    let cm_name = format!("k8sdoctor-{run}");
    // Setup (pods start, IPs known) may take half the time; the probe itself the rest.
    let setup = opts.timeout / 2;
    let probe_secs = (mc.count as f64 * mc.interval_ms / 1000.0).ceil() as u64 + 10;
    let mut args: Vec<String> = vec![
        "multicast".into(),
        "probe".into(),
        "--peers-from-configmap".into(),
        cm_name.clone(),
        "--local".into(),
        "$(POD_IP)".into(),
        "-o".into(),
        "json".into(),
        "--port".into(),
        mc.port.to_string(),
        "--count".into(),
        mc.count.to_string(),
        "--interval".into(),
        mc.interval_ms.to_string(),
        "--ttl".into(),
        mc.ttl.to_string(),
        "--wait".into(),
        setup.as_secs().max(5).to_string(),
        "--termination-log".into(),
        pod::TERMINATION_LOG.into(),
    ];
    if let Some(g) = mc.group {
        args.extend(["--group".into(), g.to_string()]);
    }
    let template = pod::PodTemplate {
        namespace: opts.namespace.clone(),
        run_id: run.to_string(),
        image: opts.image.clone(),
        args,
        deadline_secs: opts.timeout.as_secs().max(probe_secs + setup.as_secs()) as i64,
    };
    let make =
        |i: usize, node: &str| template.probe_pod_for(i, node, mc.host_network, PROBE_ACCOUNT);
    let first = nodes[0].metadata.name.clone().unwrap_or_default();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    if let Err(e) = pods.create(&dry, &make(0, &first)).await {
        return Err(rejected(&opts.namespace, e));
    }
    let mut out_nodes: Vec<McNode> = Vec::new();
    let mut parts: Vec<Participant> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = n.metadata.name.clone().unwrap_or_default();
        if let Some(why) = node_not_ready(n) {
            out_nodes.push(mc_node(&name, NodeState::Absent, Some(why), None));
            continue;
        }
        match pods.create(&PostParams::default(), &make(i, &name)).await {
            Ok(p) => parts.push(Participant {
                node: name,
                pod: p.metadata.name.unwrap_or_default(),
                ip: None,
            }),
            Err(e) => out_nodes.push(mc_node(
                &name,
                NodeState::Error,
                Some(format!("{:#}", api_err("creating its pod failed", e))),
                None,
            )),
        }
    }
    let run_sel = pod::run_selector(run);
    // Phase 1: wait until every pod runs with an IP (or will never run).
    let until = Instant::now() + setup;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        let list = pods
            .list(&ListParams::default().labels(&run_sel))
            .await
            .map_err(|e| api_err("list this run's pods", e))?;
        let mut pending = 0;
        parts.retain(|p| {
            let Some(pod) = list
                .items
                .iter()
                .find(|x| x.metadata.name.as_deref() == Some(&p.pod))
            else {
                out_nodes.push(mc_node(
                    &p.node,
                    NodeState::Error,
                    Some("its pod disappeared".into()),
                    None,
                ));
                return false;
            };
            match pod_state(pod) {
                PodState::NeverRan(why) => {
                    out_nodes.push(mc_node(&p.node, NodeState::Absent, Some(why), None));
                    false
                }
                PodState::Waiting(why) if Instant::now() >= until => {
                    out_nodes.push(mc_node(
                        &p.node,
                        NodeState::Absent,
                        Some(format!("pod not running before the probe started ({why})")),
                        None,
                    ));
                    false
                }
                _ => true,
            }
        });
        for p in &mut parts {
            let pod = list
                .items
                .iter()
                .find(|x| x.metadata.name.as_deref() == Some(&p.pod));
            p.ip = pod
                .and_then(|x| x.status.as_ref()?.pod_ip.clone())
                .filter(|ip| !ip.is_empty());
            if p.ip.is_none() {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if parts.len() < 2 {
        bail!(
            "fewer than two nodes run a probe pod ({}), so no pair can be measured",
            out_nodes
                .iter()
                .map(|n| format!("{}: {}", n.name, n.reason.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let peers: Vec<String> = parts.iter().filter_map(|p| p.ip.clone()).collect();
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(cm_name.clone()),
            namespace: Some(opts.namespace.clone()),
            labels: Some(
                [
                    (pod::MANAGED_BY.0.to_string(), pod::MANAGED_BY.1.to_string()),
                    (pod::RUN_LABEL.to_string(), run.to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([(PEERS_KEY.to_string(), peers.join(","))].into()),
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .map_err(|e| api_err("create the participants ConfigMap", e))?;
    progress(&format!(
        "{} probe pods running: {}",
        parts.len(),
        peers.join(", ")
    ));
    // Phase 2: wait for every probe to finish and read its view.
    let until = Instant::now() + Duration::from_secs(probe_secs) + setup;
    let mut views: BTreeMap<String, Value> = BTreeMap::new();
    let mut left: Vec<&Participant> = parts.iter().collect();
    while !left.is_empty() {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        let list = pods
            .list(&ListParams::default().labels(&run_sel))
            .await
            .map_err(|e| api_err("list this run's pods", e))?;
        let mut still = Vec::new();
        for p in left {
            let item = list
                .items
                .iter()
                .find(|x| x.metadata.name.as_deref() == Some(&p.pod));
            let state = item.map(pod_state);
            match state {
                Some(PodState::Exited(code)) => {
                    let log = read_log(&pods, &p.pod).await;
                    // The log cannot be read (the API server cannot reach the kubelet): the
                    // compact result in the termination message, saying so.
                    let compact = log.as_ref().err().and_then(|e| {
                        let term = pod::termination(item?);
                        let v = compact::decode_probe(term.message.as_deref()?)?;
                        let omitted = v["omitted"].as_u64().unwrap_or(0);
                        let why = compact::probe_fallback_reason(&format!("{e:#}"), &term, omitted);
                        Some((v, why))
                    });
                    let found = match compact {
                        Some((v, why)) => Some((v, Some(why))),
                        None => log
                            .as_deref()
                            .ok()
                            .and_then(probe_from_log)
                            .map(|v| (v, None)),
                    };
                    match found {
                        Some((v, why)) => {
                            views.insert(p.ip.clone().unwrap_or_default(), v);
                            out_nodes.push(mc_node(
                                &p.node,
                                NodeState::Reported,
                                why,
                                p.ip.clone(),
                            ));
                        }
                        None => out_nodes.push(mc_node(
                            &p.node,
                            NodeState::Error,
                            Some(match log {
                                Ok(l) => format!(
                                    "the probe exited {code} without a result: {}",
                                    tail(&l)
                                ),
                                Err(e) => format!("{e:#}"),
                            }),
                            p.ip.clone(),
                        )),
                    }
                }
                Some(PodState::Waiting(_)) if Instant::now() < until => still.push(p),
                Some(other) => out_nodes.push(mc_node(
                    &p.node,
                    NodeState::Error,
                    Some(format!("the probe did not finish: {other:?}")),
                    p.ip.clone(),
                )),
                None => out_nodes.push(mc_node(
                    &p.node,
                    NodeState::Error,
                    Some("its pod disappeared".into()),
                    p.ip.clone(),
                )),
            }
        }
        left = still;
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let _ = cms.delete(&cm_name, &DeleteParams::default()).await;
    let by_ip: BTreeMap<String, String> = parts
        .iter()
        .filter_map(|p| Some((p.ip.clone()?, p.node.clone())))
        .collect();
    Ok(merge(mc, out_nodes, &views, &by_ip))
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(3).collect();
    let lines: Vec<&str> = lines.into_iter().rev().collect();
    mask_secrets(&lines.join(" | "))
}

fn mc_node(
    name: &str,
    state: NodeState,
    reason: Option<String>,
    address: Option<String>,
) -> McNode {
    McNode {
        name: name.into(),
        state,
        reason: reason.map(|r| mask_secrets(&r)),
        address,
    }
}

/// The probe's JSON result in a pod log (the first object with a `pairs` array).
pub fn probe_from_log(log: &str) -> Option<Value> {
    let mut offset = 0;
    for line in log.split_inclusive('\n') {
        if line.starts_with('{') {
            let mut it = serde_json::Deserializer::from_str(&log[offset..]).into_iter::<Value>();
            if let Some(Ok(v)) = it.next()
                && v["pairs"].is_array()
            {
                return Some(v);
            }
        }
        offset += line.len();
    }
    None
}

/// One matrix from every participant's view: a pair's numbers come from its receiver's own view
/// (it measured the reception), else from any participant that reported the pair.
pub fn merge(
    mc: &McOptions,
    mut nodes: Vec<McNode>,
    views: &BTreeMap<String, Value>,
    by_ip: &BTreeMap<String, String>,
) -> McFleetReport {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut pairs: BTreeMap<(String, String), McPair> = BTreeMap::new();
    let node_of = |ip: &str| by_ip.get(ip).cloned().unwrap_or_else(|| ip.to_string());
    for (viewer, v) in views {
        for p in v["pairs"].as_array().into_iter().flatten() {
            let (Some(s), Some(r)) = (p["sender"].as_str(), p["receiver"].as_str()) else {
                continue;
            };
            let key = (s.to_string(), r.to_string());
            if pairs.contains_key(&key) && r != viewer {
                continue;
            }
            pairs.insert(
                key,
                McPair {
                    sender_node: node_of(s),
                    receiver_node: node_of(r),
                    sender: s.into(),
                    receiver: r.into(),
                    sent: p["sent"].as_u64(),
                    received: p["received"].as_u64().unwrap_or(0),
                    loss_pct: p["loss_pct"].as_f64().unwrap_or(100.0),
                    duplicates: p["duplicates"].as_u64().unwrap_or(0),
                    reordered: p["reordered"].as_u64().unwrap_or(0),
                    latency_p50_ms: p["latency_p50_ms"].as_f64(),
                    verdict: p["verdict"].as_str().unwrap_or("fail").into(),
                    cause: (!p["cause"].is_null()).then(|| p["cause"].clone()),
                },
            );
        }
    }
    let pairs: Vec<McPair> = pairs.into_values().collect();
    let pass = !pairs.is_empty()
        && pairs.iter().all(|p| p.verdict == "pass")
        && nodes.iter().all(|n| n.state == NodeState::Reported);
    McFleetReport {
        schema_version: super::report::FLEET_SCHEMA_VERSION.into(),
        network: if mc.host_network { "node" } else { "pod" }.into(),
        group: mc.group.map(|g| g.to_string()),
        port: mc.port,
        nodes,
        pairs,
        pass,
    }
}

impl McFleetReport {
    /// Renders the matrix: a row per sender, a column per receiver (a bad row is the sender's
    /// egress, a bad column the receiver's ingress), then each failing pair's cause.
    pub fn render_table(&self, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
        let reported: Vec<&McNode> = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Reported)
            .collect();
        let mut header = vec!["sender \\ receiver"];
        header.extend(reported.iter().map(|n| n.name.as_str()));
        let mut t = status_table(&header, color);
        for s in &reported {
            let mut row = vec![s.name.clone()];
            for r in &reported {
                let cell = if s.name == r.name {
                    "—".to_string()
                } else {
                    self.pairs
                        .iter()
                        .find(|p| p.sender_node == s.name && p.receiver_node == r.name)
                        .map_or("no data".into(), |p| {
                            let mark = if p.verdict == "pass" { "✓" } else { "✗" };
                            format!("{mark} {:.1}% loss", p.loss_pct)
                        })
                };
                row.push(cell);
            }
            t.add_row(row);
        }
        writeln!(out, "{t}")?;
        for n in self.nodes.iter().filter(|n| n.state != NodeState::Reported) {
            writeln!(
                out,
                "{}: {} — {}",
                n.name,
                match n.state {
                    NodeState::Absent => "absent",
                    _ => "error",
                },
                n.reason.as_deref().unwrap_or("")
            )?;
        }
        for p in self.pairs.iter().filter(|p| p.verdict != "pass") {
            let cause = p
                .cause
                .as_ref()
                .map(|c| {
                    let kind = c["kind"].as_str().or_else(|| c.as_str()).unwrap_or("");
                    let ev: Vec<&str> = c["evidence"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    format!("{kind} {}", ev.join("; "))
                })
                .unwrap_or_default();
            writeln!(
                out,
                "✗ {} → {}: {:.1}% loss {cause}",
                p.sender_node, p.receiver_node, p.loss_pct
            )?;
        }
        writeln!(
            out,
            "{}",
            if self.pass {
                "every pair passes"
            } else {
                "some pairs fail"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_receivers_view_of_a_pair_wins_and_nodes_name_the_cells() {
        let mc = McOptions {
            host_network: false,
            group: None,
            port: 4444,
            count: 10,
            interval_ms: 10.0,
            ttl: 1,
        };
        let pair = |s: &str, r: &str, loss: f64| {
            json!({"sender": s, "receiver": r, "sent": 10, "received": 10 - (loss / 10.0) as u64,
                "loss_pct": loss, "duplicates": 0, "reordered": 0,
                "verdict": if loss > 0.0 { "fail" } else { "pass" },
                "cause": if loss > 0.0 { json!({"kind": "firewall"}) } else { Value::Null }})
        };
        let views = BTreeMap::from([
            (
                "10.0.0.1".to_string(),
                json!({"pairs": [pair("10.0.0.1", "10.0.0.2", 0.0), pair("10.0.0.2", "10.0.0.1", 0.0)]}),
            ),
            (
                "10.0.0.2".to_string(),
                json!({"pairs": [pair("10.0.0.1", "10.0.0.2", 100.0), pair("10.0.0.2", "10.0.0.1", 0.0)]}),
            ),
        ]);
        let by_ip = BTreeMap::from([
            ("10.0.0.1".to_string(), "a".to_string()),
            ("10.0.0.2".to_string(), "b".to_string()),
        ]);
        let nodes = vec![
            mc_node("b", NodeState::Reported, None, Some("10.0.0.2".into())),
            mc_node("a", NodeState::Reported, None, Some("10.0.0.1".into())),
        ];
        let r = merge(&mc, nodes, &views, &by_ip);
        let ab = r
            .pairs
            .iter()
            .find(|p| p.sender_node == "a" && p.receiver_node == "b")
            .unwrap();
        assert_eq!(
            (ab.loss_pct, ab.verdict.as_str()),
            (100.0, "fail"),
            "b's own view of a→b"
        );
        assert!(!r.pass);
        let mut t = Vec::new();
        r.render_table(false, &mut t).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(t.contains("✗ a → b: 100.0% loss firewall"), "{t}");
    }

    #[test]
    fn the_probe_result_is_found_among_log_noise() {
        let log = "waiting for peers\n{\"not\": \"it\"}\n{\"pairs\": [], \"pass\": true}\n";
        assert_eq!(probe_from_log(log).unwrap()["pass"], true);
    }
}
