//! `fleet multicast`: the guide's pod-to-pod multicast test, automated. One probe pod per node (on
//! the pod network by default), the participants handed to them in a ConfigMap once every pod has
//! its IP, and every participant's view merged into one sender → receiver matrix named by node; on
//! the pod network one observer pod per node reads the node's own live ruleset too, so a policy
//! engine's DROP in the node's forward path is named in the pairs it breaks.

use std::{
    collections::BTreeMap,
    io::Write,
    net::IpAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Result, anyhow, bail};
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, EnvVar, Pod, ServiceAccount},
        rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{Api, Client, api::PostParams, core::ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    CREATE, Change, NodeState, Progress, RunWatch, api_err, cannot_run, compact, create_owner,
    ensure_namespace, finish_pod, pod, pod::PodState, pod_state, read_log, rejected, retry,
    select_nodes, sweep_stale,
};
use crate::{
    checks::cluster::connect, mask::mask_secrets, multicast::nodefw::NodeFirewall,
    report::status_table,
};

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
    /// The node's own live ruleset as its observer pod read it (the pod network only): `read
    /// live`, or `could not be read: <why>`; null when not observed (--host-network: the probes
    /// run in the node's namespace and read it themselves).
    #[serde(default)]
    pub node_firewall: Option<String>,
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
    /// Percent lost; null when the pair was not measured.
    pub loss_pct: Option<f64>,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_p50_ms: Option<f64>,
    /// `pass`, `fail`, or `not-measured` (then `reason` says why, and there is no loss or cause).
    pub verdict: String,
    /// Why the pair was not measured.
    pub reason: Option<String>,
    /// The probe's cause for a failing pair (`code`, `message`, `evidence`).
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

/// The ConfigMap that hands the probes their peers.
pub fn peers_configmap(run: &str) -> String {
    format!("k8sdoctor-{run}-peers")
}

/// The environment variable that tells a probe pod how long to wait for its peers ConfigMap
/// (seconds from its start): the CLI's whole pod-start wait and a margin, so a probe that started
/// first still finds the list the CLI writes when that wait ends.
pub const PEERS_WAIT_ENV: &str = "K8SDOCTOR_PEERS_WAIT";

/// The most nodes one `fleet multicast` measures: each probe's report travels in one UDP datagram.
pub const MAX_NODES: usize = 48;

/// The participants as the ConfigMap holds them: addresses, comma-separated (about 16 bytes a
/// node, so even thousands stay far below a ConfigMap's 1 MiB).
pub fn encode_peers(peers: &[IpAddr]) -> String {
    peers
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`encode_peers`]'s text back.
pub fn decode_peers(name: &str, text: &str) -> Result<Vec<IpAddr>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|e| anyhow!("ConfigMap {name}: {s:?}: {e}"))
        })
        .collect()
}

/// The in-cluster address of the API server, as a pod dials it.
fn api_address() -> String {
    match (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) {
        (Ok(h), Ok(p)) if h.contains(':') => format!("[{h}]:{p}"),
        (Ok(h), Ok(p)) => format!("{h}:{p}"),
        _ => "its configured address".into(),
    }
}

/// Why the probe could not get its peers, in the words an operator acts on.
fn unreachable(e: &kube::Error) -> anyhow::Error {
    let at = api_address();
    if let kube::Error::Api(s) = e {
        return anyhow!(
            "the API server at {at} kept refusing to hand out the peers: {} {}: {}",
            s.code,
            s.reason,
            mask_secrets(&s.message)
        );
    }
    let f = connect::ApiFailure::classify(&at, e, Duration::from_secs(10));
    let what = match f.layer {
        connect::Layer::TcpRefused => "connection refused".to_string(),
        connect::Layer::Timeout => "no answer (timed out)".to_string(),
        _ => f.message,
    };
    anyhow!("cannot reach the API server at {at}: {what} — kube-proxy or the node's firewall")
}

/// Reads the participants from the run's ConfigMap, as a probe pod does (in-cluster credentials):
/// polled until it appears, transient API errors (refused, reset, timeouts, 429, 5xx) retried
/// with backoff, all within `wait` (or [`PEERS_WAIT_ENV`] seconds when the pod sets it).
pub fn peers_from_configmap(name: &str, wait: Duration) -> Result<Vec<IpAddr>> {
    let wait = std::env::var(PEERS_WAIT_ENV)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(wait, Duration::from_secs);
    let rt = super::runtime()?;
    let r = rt.block_on(async {
        let cfg = crate::core::config::Config::default();
        let (client, _) = super::client(&cfg).await?;
        let cms: Api<ConfigMap> = Api::default_namespaced(client);
        let until = Instant::now() + wait;
        let mut failures = 0;
        let mut polls = 0;
        loop {
            let pause = match cms.get_opt(name).await {
                Ok(Some(cm)) => {
                    let text = cm
                        .data
                        .and_then(|d| d.get(PEERS_KEY).cloned())
                        .ok_or_else(|| anyhow!("ConfigMap {name} has no {PEERS_KEY:?} key"))?;
                    return decode_peers(name, &text);
                }
                Ok(None) if Instant::now() >= until => bail!(
                    "ConfigMap {name} did not appear within {:.0}s: the CLI wrote no participant list (was it interrupted?)",
                    wait.as_secs_f64()
                ),
                // Not written yet: poll, slower as the wait goes on (a few requests a probe).
                Ok(None) => {
                    failures = 0;
                    polls += 1;
                    Duration::from_millis(250 * polls.min(8))
                }
                Err(e) => match retry::classify(&e) {
                    retry::Next::Retry(after) if Instant::now() < until => {
                        failures += 1;
                        retry::pause(failures - 1, after)
                    }
                    retry::Next::Retry(_) => return Err(unreachable(&e)),
                    retry::Next::Final => {
                        return Err(api_err(&format!("get ConfigMap {name}"), e));
                    }
                },
            };
            tokio::time::sleep(pause.min(until.saturating_duration_since(Instant::now()).max(Duration::from_millis(10)))).await;
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

/// A node whose probe pod was created, while the run waits for it.
struct Participant {
    node: String,
    pod: String,
    ip: Option<String>,
    /// Why it is not running yet, as last seen.
    last: String,
    /// Its outcome once known (absent, error, or reported).
    done: bool,
}

impl Participant {
    /// Its outcome is known: its node entry goes out once, and it takes no further part.
    fn settle(
        &mut self,
        out: &mut Vec<McNode>,
        state: NodeState,
        reason: Option<String>,
        ip: Option<String>,
    ) {
        out.push(mc_node(&self.node, state, reason, ip));
        self.done = true;
    }
}

/// A node's firewall observer (the pod network only) while the run waits for it.
struct Observer {
    node: String,
    pod: String,
    /// What it found, or why the node's rules could not be read; `None` while it runs.
    result: Option<Result<NodeFirewall, String>>,
}

/// The observer's reason, without the reader's own "the firewall could not be read: " prefix
/// (the cause says whose firewall it was).
fn unread_reason(why: &str) -> String {
    why.strip_prefix("the firewall could not be read: ")
        .unwrap_or(why)
        .to_string()
}

/// Takes in a pod of the run if it is an unfinished observer: once it has ended, its result (from
/// its log, or the compact one in its termination message when the log cannot be read), or why
/// it gave none.
async fn observe_pod(pods: &Api<Pod>, observers: &mut [Observer], pod: &Pod) {
    let Some(o) = observers
        .iter_mut()
        .find(|o| o.result.is_none() && pod.metadata.name.as_deref() == Some(&o.pod))
    else {
        return;
    };
    o.result = match pod_state(pod) {
        PodState::Waiting(_) => None,
        // A failing pull may clear; the run's deadline ends the wait otherwise.
        PodState::NeverRan(_) if super::pulling_fails(pod) => None,
        PodState::NeverRan(why) | PodState::Stopped(why) => {
            Some(Err(format!("its observer pod did not run: {why}")))
        }
        PodState::Exited(code) => {
            let log = read_log(pods, &o.pod).await;
            let from_log = log
                .as_deref()
                .ok()
                .and_then(|l| json_from_log(l, "findings"))
                .and_then(|v| serde_json::from_value::<NodeFirewall>(v).ok());
            let found = from_log.or_else(|| {
                let term = pod::termination(pod);
                serde_json::from_str::<NodeFirewall>(term.message.as_deref()?.trim()).ok()
            });
            Some(match found {
                Some(fw) => match &fw.error {
                    Some(why) => Err(unread_reason(why)),
                    None => Ok(fw),
                },
                None => Err(match log {
                    Ok(l) => format!("its observer exited {code} without a result: {}", tail(&l)),
                    Err(e) => format!("its observer's result could not be read: {e:#}"),
                }),
            })
        }
    };
}

/// A pod of the run as the watch delivered it, and when: the moment the run first knew its state
/// (a pod that has exited is placed in time by it).
type Seen = (Pod, Instant);

/// The run's pods as listed now.
async fn list_now(watch: &mut RunWatch) -> Result<Vec<Seen>> {
    let all = watch.list().await?;
    let now = Instant::now();
    Ok(all.into_iter().map(|p| (p, now)).collect())
}

/// Waits at most `wait` for the next change of the run's pods: a changed pod joins `seen`, a
/// re-list replaces it; returns the name of a pod deleted from outside.
async fn step(
    watch: &mut RunWatch,
    wait: Duration,
    seen: &mut Vec<Seen>,
) -> Result<Option<String>> {
    Ok(match watch.next(wait).await? {
        Change::Pod(p) => {
            seen.push((*p, Instant::now()));
            None
        }
        Change::Relisted(all) => {
            let now = Instant::now();
            *seen = all.into_iter().map(|p| (p, now)).collect();
            None
        }
        Change::Gone(name) => Some(name),
        Change::Idle => None,
    })
}

/// A pod of the run deleted from outside before it finished (`fleet cleanup` from another shell).
fn disappeared(
    name: &str,
    parts: &mut [Participant],
    observers: &mut [Observer],
    out_nodes: &mut Vec<McNode>,
) {
    if let Some(p) = parts.iter_mut().find(|p| !p.done && p.pod == name) {
        p.settle(
            out_nodes,
            NodeState::Error,
            Some("its pod disappeared".into()),
            p.ip.clone(),
        );
    }
    if let Some(o) = observers
        .iter_mut()
        .find(|o| o.result.is_none() && o.pod == name)
    {
        o.result = Some(Err("its observer pod disappeared".into()));
    }
}

/// The observer pod for a node: the image's own `multicast node-firewall` in the node's network
/// namespace (hostNetwork: the namespace a policy engine filters pod traffic in), reading the
/// senders from the participants ConfigMap with the probes' service account. Its security context
/// is the check pods' (see `pod::security_context`): every capability dropped but `NET_ADMIN`,
/// which the netfilter dumps (iptables' getsockopt, nft's netlink) need in the node's namespace
/// and nothing else does; a read-only root; no host mount, no host PID namespace.
fn observer_pod(template: &pod::PodTemplate, index: usize, node: &str) -> Pod {
    let mut p = template.probe_pod_for(index, node, true, PROBE_ACCOUNT);
    p.metadata.name = Some(format!("k8sdoctor-{}-fw-{index}", template.run_id));
    if let Some(c) = p.spec.as_mut().map(|s| &mut s.containers[0]) {
        c.env = None;
    }
    p
}

/// Runs the probe across the selected nodes and merges the views.
pub(super) async fn fan_out(
    client: &Client,
    cfg_timeout: Duration,
    opts: &super::FleetOptions,
    mc: &McOptions,
    run: &str,
    stop: &AtomicBool,
    progress: Progress<'_>,
) -> Result<McFleetReport> {
    let started = Instant::now();
    let nodes = select_nodes(client, opts).await?;
    let runnable = nodes
        .iter()
        .filter(|n| cannot_run(n, &opts.images).is_none())
        .count();
    if runnable > MAX_NODES {
        bail!(
            "{runnable} nodes selected; fleet multicast measures at most {MAX_NODES} at once (each probe's \
             report travels in one UDP datagram): pick nodes with --nodes or --selector, e.g. one rack or \
             subnet at a time"
        );
    }
    ensure_namespace(client, &opts.namespace, progress).await?;
    ensure_account(client, &opts.namespace).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &opts.namespace);
    sweep_stale(&pods, progress).await?;
    let cm_name = peers_configmap(run);
    // Setup (pods start, IPs known) may take half the time; the probe itself the rest. A peer that
    // never shows up costs the others at most `rendezvous` per stage, not the whole run.
    let setup = opts.timeout / 2;
    let rendezvous = setup.clamp(Duration::from_secs(5), Duration::from_secs(10));
    let probe_secs =
        (mc.count as f64 * mc.interval_ms / 1000.0).ceil() as u64 + 3 * rendezvous.as_secs() + 5;
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
        rendezvous.as_secs().to_string(),
        "--termination-log".into(),
        pod::TERMINATION_LOG.into(),
    ];
    if let Some(g) = mc.group {
        args.extend(["--group".into(), g.to_string()]);
    }
    let template = pod::PodTemplate {
        namespace: opts.namespace.clone(),
        run_id: run.to_string(),
        image: opts.images.first().to_string(),
        args,
        deadline_secs: opts.timeout.as_secs().max(probe_secs + setup.as_secs()) as i64,
    };
    // The node's own rules, on the pod network (with --host-network the probes are in the
    // node's namespace and read them themselves).
    let mut fw_args: Vec<String> = [
        "multicast",
        "node-firewall",
        "--peers-from-configmap",
        &cm_name,
        "-o",
        "json",
        "--termination-log",
        pod::TERMINATION_LOG,
        "--timeout",
        "10",
        "--port",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([mc.port.to_string()])
    .collect();
    if let Some(g) = mc.group {
        fw_args.extend(["--group".into(), g.to_string()]);
    }
    let fw_template = pod::PodTemplate {
        args: fw_args,
        ..template.clone()
    };
    // The probe's wait for its peers covers the CLI's whole pod-start wait, whenever it started.
    let peers_wait = (setup + Duration::from_secs(10)).as_secs().to_string();
    let peers_env = EnvVar {
        name: PEERS_WAIT_ENV.into(),
        value: Some(peers_wait.clone()),
        ..Default::default()
    };
    let make_observer = |i: usize, node: &str, image: &str, owner: &OwnerReference| {
        let mut p = finish_pod(
            observer_pod(&fw_template, i, node),
            image,
            opts,
            Some(owner),
        );
        if let Some(c) = p.spec.as_mut().map(|s| &mut s.containers[0]) {
            c.env = Some(vec![peers_env.clone()]);
        }
        p
    };
    let make = |i: usize, node: &str, image: &str, owner: Option<&OwnerReference>| {
        let mut p = finish_pod(
            template.probe_pod_for(i, node, mc.host_network, PROBE_ACCOUNT),
            image,
            opts,
            owner,
        );
        if let Some(c) = p.spec.as_mut().map(|s| &mut s.containers[0]) {
            c.env.get_or_insert_default().push(EnvVar {
                name: PEERS_WAIT_ENV.into(),
                value: Some(peers_wait.clone()),
                ..Default::default()
            });
        }
        p
    };
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    if let Err(e) = pods
        .create(&dry, &make(0, &nodes[0].name, opts.images.first(), None))
        .await
    {
        return Err(rejected(&opts.namespace, e));
    }
    let owner = create_owner(&cms, run, &[("command", "fleet multicast".into())]).await?;
    let mut out_nodes: Vec<McNode> = Vec::new();
    let mut parts: Vec<Participant> = Vec::new();
    let mut observers: Vec<Observer> = Vec::new();
    let until = Instant::now() + setup;
    for (i, n) in nodes.iter().enumerate() {
        if let Some(why) = cannot_run(n, &opts.images) {
            out_nodes.push(mc_node(&n.name, NodeState::Absent, Some(why), None));
            continue;
        }
        let image = opts.images.for_arch(&n.arch).unwrap_or_default();
        let pod = make(i, &n.name, image, Some(&owner));
        match retry::until(until, || pods.create(&CREATE, &pod)).await {
            Ok(_) => parts.push(Participant {
                node: n.name.clone(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                ip: None,
                last: "not started yet".into(),
                done: false,
            }),
            Err(kube::Error::Api(s)) if s.code == 409 => parts.push(Participant {
                node: n.name.clone(),
                pod: pod.metadata.name.clone().unwrap_or_default(),
                ip: None,
                last: "not started yet".into(),
                done: false,
            }),
            Err(e) => {
                out_nodes.push(mc_node(
                    &n.name,
                    NodeState::Error,
                    Some(format!("{:#}", api_err("creating its pod failed", e))),
                    None,
                ));
                continue;
            }
        }
        if !mc.host_network {
            let op = make_observer(i, &n.name, image, &owner);
            let result = match retry::until(until, || pods.create(&CREATE, &op)).await {
                Ok(_) => None,
                Err(kube::Error::Api(s)) if s.code == 409 => None,
                Err(e) => Some(Err(format!(
                    "{:#}",
                    api_err("its observer pod could not be created", e)
                ))),
            };
            observers.push(Observer {
                node: n.name.clone(),
                pod: op.metadata.name.clone().unwrap_or_default(),
                result,
            });
        }
    }
    // Phase 1: watch until every pod runs with an IP (or will never run), or the setup time is up;
    // then the participants are the pods running at that moment, and the others are named.
    let grace = super::pull_grace(opts.timeout);
    let mut watch = RunWatch::new(
        pods.clone(),
        run,
        Instant::now() + opts.timeout,
        cfg_timeout,
    );
    let mut seen = list_now(&mut watch).await?;
    let mut pull_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        for (pod, _) in seen.drain(..) {
            observe_pod(&pods, &mut observers, &pod).await;
            let Some(p) = parts
                .iter_mut()
                .find(|p| !p.done && pod.metadata.name.as_deref() == Some(&p.pod))
            else {
                continue;
            };
            let pulling = super::pulling_fails(&pod);
            if !pulling {
                pull_since.remove(&p.pod);
            }
            let in_grace = pulling
                && pull_since
                    .entry(p.pod.clone())
                    .or_insert_with(Instant::now)
                    .elapsed()
                    < grace;
            match pod_state(&pod) {
                PodState::NeverRan(why) if !in_grace => {
                    p.settle(&mut out_nodes, NodeState::Absent, Some(why), None);
                }
                PodState::NeverRan(why) | PodState::Waiting(why) => {
                    p.last = why;
                    p.ip = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ip.clone())
                        .filter(|ip| !ip.is_empty() && pod_running(&pod));
                }
                PodState::Stopped(why) => {
                    p.settle(&mut out_nodes, NodeState::Error, Some(why), None);
                }
                // Ended before it had its peers: its log says why (it could not reach the API...).
                PodState::Exited(code) => {
                    let log = read_log(&pods, &p.pod).await;
                    let why = match log {
                        Ok(l) => format!(
                            "the probe exited {code} before the run started: {}",
                            tail(&l)
                        ),
                        Err(e) => format!("{e:#}"),
                    };
                    p.settle(&mut out_nodes, NodeState::Error, Some(why), None);
                }
            }
        }
        let pending = parts.iter().filter(|p| !p.done && p.ip.is_none()).count();
        if pending == 0 || Instant::now() >= until {
            break;
        }
        let wait = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        if let Some(name) = step(&mut watch, wait, &mut seen).await? {
            disappeared(&name, &mut parts, &mut observers, &mut out_nodes);
        }
    }
    for p in parts.iter_mut().filter(|p| !p.done && p.ip.is_none()) {
        p.settle(
            &mut out_nodes,
            NodeState::Absent,
            Some(format!(
                "pod not running when the probe started ({})",
                p.last
            )),
            None,
        );
    }
    parts.retain(|p| !p.done);
    // A node without a running probe is in no measured pair: its firewall does not matter.
    observers.retain(|o| parts.iter().any(|p| p.node == o.node));
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
    let peers: Vec<IpAddr> = parts
        .iter()
        .filter_map(|p| p.ip.as_deref()?.parse().ok())
        .collect();
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
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Some([(PEERS_KEY.to_string(), encode_peers(&peers))].into()),
        ..Default::default()
    };
    super::create_once(&cms, &cm, Instant::now() + Duration::from_secs(20))
        .await
        .map_err(|e| api_err("create the participants ConfigMap", e))?;
    progress(&format!(
        "{} probe pods running: {}",
        parts.len(),
        encode_peers(&peers)
    ));
    // Phase 2: as each probe ends, read its view; every probe has its own deadline, none waits
    // for another here.
    // The run ends by --timeout, unless the measurement itself (--count × --interval, and a
    // rendezvous each for the peers' start and reports) needs longer.
    let measure = Duration::from_secs_f64(mc.count as f64 * mc.interval_ms / 1000.0);
    let run_until = started
        + opts
            .timeout
            .max(setup + measure + 2 * rendezvous + Duration::from_secs(2));
    let until = (Instant::now() + Duration::from_secs(probe_secs) + rendezvous).min(run_until);
    let mut views: BTreeMap<String, Value> = BTreeMap::new();
    let mut windows: BTreeMap<String, Window> = BTreeMap::new();
    let mut seen = list_now(&mut watch).await?;
    // Observers read the rules once the ConfigMap is there: a moment. One still running when
    // the probes are done gets a rendezvous more, not the whole run.
    let mut probes_done: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        for (pod, at) in seen.drain(..) {
            observe_pod(&pods, &mut observers, &pod).await;
            let Some(p) = parts
                .iter_mut()
                .find(|p| !p.done && pod.metadata.name.as_deref() == Some(&p.pod))
            else {
                continue;
            };
            let (state, reason) = match pod_state(&pod) {
                PodState::Exited(code) => {
                    let log = read_log(&pods, &p.pod).await;
                    // The log cannot be read (the API server cannot reach the kubelet): the
                    // compact result in the termination message, saying so.
                    let compact = log.as_ref().err().and_then(|e| {
                        let term = pod::termination(&pod);
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
                            let ip = p.ip.clone().unwrap_or_default();
                            if let Some(w) = Window::of(&v, at.saturating_duration_since(started)) {
                                windows.insert(ip.clone(), w);
                            }
                            views.insert(ip, v);
                            (NodeState::Reported, why)
                        }
                        None => (
                            NodeState::Error,
                            Some(match log {
                                Ok(l) => format!(
                                    "the probe exited {code} without a result: {}",
                                    tail(&l)
                                ),
                                Err(e) => format!("{e:#}"),
                            }),
                        ),
                    }
                }
                PodState::Waiting(_) => continue,
                PodState::NeverRan(why) | PodState::Stopped(why) => (
                    NodeState::Error,
                    Some(format!("the probe did not finish: {why}")),
                ),
            };
            p.settle(&mut out_nodes, state, reason, p.ip.clone());
        }
        let probing = parts.iter().any(|p| !p.done);
        if !probing && probes_done.is_none() {
            probes_done = Some(Instant::now());
        }
        let observing = observers.iter().any(|o| o.result.is_none());
        if !probing && !observing {
            break;
        }
        let observers_until = probes_done.map_or(until, |t| (t + rendezvous).min(until));
        if Instant::now() >= until || (!probing && Instant::now() >= observers_until) {
            for p in parts.iter_mut().filter(|p| !p.done) {
                p.settle(
                    &mut out_nodes,
                    NodeState::Error,
                    Some("the probe did not finish by the run's deadline".into()),
                    p.ip.clone(),
                );
            }
            for o in observers.iter_mut().filter(|o| o.result.is_none()) {
                o.result = Some(Err(
                    "its observer did not finish by the run's deadline".into()
                ));
            }
            break;
        }
        if let Some(name) = step(&mut watch, Duration::from_millis(250), &mut seen).await? {
            disappeared(&name, &mut parts, &mut observers, &mut out_nodes);
        }
    }
    let by_ip: BTreeMap<String, String> = parts
        .iter()
        .filter_map(|p| Some((p.ip.clone()?, p.node.clone())))
        .collect();
    let firewalls: BTreeMap<String, Result<NodeFirewall, String>> = observers
        .into_iter()
        .filter_map(|o| Some((o.node, o.result?)))
        .collect();
    let mut report = merge(mc, out_nodes, &views, &by_ip, &windows);
    join_node_side(&mut report, &firewalls);
    Ok(report)
}

/// Running (its container started), so its IP is where its probe listens.
fn pod_running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
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
        node_firewall: None,
    }
}

/// The probe's JSON result in a pod log (the first object with a `pairs` array).
pub fn probe_from_log(log: &str) -> Option<Value> {
    json_from_log(log, "pairs")
}

/// The first JSON object in a pod log (noise around it tolerated) whose `key` is an array.
fn json_from_log(log: &str, key: &str) -> Option<Value> {
    let mut offset = 0;
    for line in log.split_inclusive('\n') {
        if line.starts_with('{') {
            let mut it = serde_json::Deserializer::from_str(&log[offset..]).into_iter::<Value>();
            if let Some(Ok(v)) = it.next()
                && v[key].is_array()
            {
                return Some(v);
            }
        }
        offset += line.len();
    }
    None
}

/// Which pair causes a rule of a node's own ruleset that drops the pair's traffic replaces: the
/// probe's guesses from what it could not see, not its observations (a rule in the pod with grown
/// counters, unicast failing too, a group not joined).
const NODE_RULE_OVERRIDES: &[&str] = &[
    "unknown",
    "igmp-snooping",
    "not-routed",
    "ignored-multi",
    "cni",
];

/// Joins the observers' evidence into the failing pairs: a rule of the receiver's or the
/// sender's node that drops the sender's traffic becomes the pair's cause (the rule cited), a
/// node whose rules could not be read is named with the reason (so "nothing explains it" is never
/// claimed over rules nobody read), and a node whose rules drop nothing says so in the evidence.
/// Passing and unmeasured pairs get nothing.
pub fn join_node_side(r: &mut McFleetReport, fw: &BTreeMap<String, Result<NodeFirewall, String>>) {
    for n in &mut r.nodes {
        n.node_firewall = fw.get(&n.name).map(|f| match f {
            Ok(_) => "read live".to_string(),
            Err(why) => mask_secrets(&format!("could not be read: {why}")),
        });
    }
    for p in r.pairs.iter_mut().filter(|p| p.verdict == "fail") {
        let (mut blocked, mut maybe, mut unread, mut clean) = (vec![], vec![], vec![], vec![]);
        for (node, whose) in [
            (&p.receiver_node, "receiver's"),
            (&p.sender_node, "sender's"),
        ] {
            match fw.get(node) {
                Some(Ok(f)) => {
                    let found = f.for_sender(&p.sender);
                    if found.is_empty() {
                        clean.push(format!(
                            "node {node}'s live ruleset drops nothing of udp/{} from {} ({})",
                            f.port, p.sender, f.path
                        ));
                    }
                    for x in found {
                        let line = format!("node {node} (the {whose}): {}", x.line);
                        if x.blocks {
                            blocked.push((node.clone(), whose, x.line.clone()));
                        } else {
                            maybe.push(format!("{line} (may drop it)"));
                        }
                    }
                }
                Some(Err(why)) => {
                    unread.push(format!("node {node}'s firewall could not be read: {why}"))
                }
                None => {}
            }
        }
        let probe = p.cause.take();
        let code = probe
            .as_ref()
            .and_then(|c| c["code"].as_str())
            .unwrap_or("unknown")
            .to_string();
        let mut evidence: Vec<String> = probe
            .as_ref()
            .and_then(|c| c["evidence"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(String::from))
            .collect();
        let probe_message = probe
            .as_ref()
            .and_then(|c| c["message"].as_str())
            .unwrap_or("")
            .to_string();
        let what = if p.received == 0 {
            format!("no datagram from {} arrived", p.sender)
        } else {
            format!("datagrams from {} were lost", p.sender)
        };
        // The probe's own cause, when a node-side finding replaces it, stays first in the evidence.
        let replaced = match blocked.first() {
            Some((node, whose, line))
                if probe.is_none() || NODE_RULE_OVERRIDES.contains(&code.as_str()) =>
            {
                Some((
                    "firewall".to_string(),
                    format!(
                        "firewall: node {node} (the {whose}) drops the group's traffic from {}: {line}",
                        p.sender
                    ),
                ))
            }
            None if code == "unknown" && !unread.is_empty() => Some((
                code.clone(),
                format!(
                    "{what}, and {} — a rule a policy engine keeps in the node's namespace may drop it",
                    unread.join("; ")
                ),
            )),
            None if code == "unknown" && !maybe.is_empty() => Some((
                code.clone(),
                format!(
                    "{what}; no rule the evaluator can decide drops it, but {}",
                    maybe[0]
                ),
            )),
            _ => None,
        };
        // "Drops nothing" backs a node-side cause or an unexplained loss; beside the probe's own
        // finding (a rule in the pod with its counters) it is noise.
        let node_side = replaced.is_some() || code == "unknown";
        let (code, message) = match replaced {
            Some(new) => {
                evidence.insert(
                    0,
                    format!(
                        "the probe in the receiving pod: [{code}] {}",
                        pod_words(&probe_message)
                    ),
                );
                new
            }
            None => (code, probe_message),
        };
        evidence.extend(
            blocked
                .iter()
                .map(|(node, whose, line)| format!("node {node} (the {whose}): {line}")),
        );
        evidence.extend(maybe);
        evidence.extend(unread);
        if node_side {
            evidence.extend(clean);
        }
        p.cause = Some(serde_json::json!({
            "code": code,
            "message": mask_secrets(&message),
            "evidence": evidence.iter().map(|e| mask_secrets(e)).collect::<Vec<_>>(),
        }));
    }
}

/// The probe's words about "this node", which for a probe in a pod is the pod's own namespace.
fn pod_words(message: &str) -> String {
    message
        .replace(
            "nothing on this node explains it",
            "nothing in the pod's own namespace explains it",
        )
        .replace(
            "no rule on this node dropped them",
            "no rule in the pod's own namespace dropped them",
        )
}

/// One matrix from every participant's view: a pair's numbers come from its receiver's own view
/// (it measured the reception), else from any participant that reported the pair. A pair whose
/// sender or receiver gave no result, or that no view measured, is `not-measured` with the reason:
/// no loss figure, no cause.
pub fn merge(
    mc: &McOptions,
    mut nodes: Vec<McNode>,
    views: &BTreeMap<String, Value>,
    by_ip: &BTreeMap<String, String>,
    windows: &BTreeMap<String, Window>,
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
            let cause = (!p["cause"].is_null()).then(|| p["cause"].clone());
            let mut pair = McPair {
                sender_node: node_of(s),
                receiver_node: node_of(r),
                sender: s.into(),
                receiver: r.into(),
                sent: p["sent"].as_u64(),
                received: p["received"].as_u64().unwrap_or(0),
                loss_pct: p["loss_pct"].as_f64(),
                duplicates: p["duplicates"].as_u64().unwrap_or(0),
                reordered: p["reordered"].as_u64().unwrap_or(0),
                latency_p50_ms: p["latency_p50_ms"].as_f64(),
                verdict: p["verdict"].as_str().unwrap_or("fail").into(),
                reason: None,
                cause,
            };
            // "No report", or a sender done before its receiver was up, is the absence of a
            // measurement, not a finding about the network.
            let code = pair.cause.as_ref().and_then(|c| c["code"].as_str());
            if matches!(code, Some("no-result" | crate::multicast::cause::LATE_JOIN)) {
                let why = pair
                    .cause
                    .as_ref()
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or("")
                    .to_string();
                not_measured(&mut pair, why);
            }
            // A receiver that heard nothing at all from its sender only says something about the
            // network if both probes were up at the same time.
            if pair.verdict == "fail"
                && p["heard"] == false
                && let Some(why) = apart(&pair, windows)
            {
                not_measured(&mut pair, why);
            }
            pairs.insert(key, pair);
        }
    }
    // Every ordered pair of participants appears, measured or not.
    for (s, sn) in by_ip {
        for (r, rn) in by_ip {
            if s == r {
                continue;
            }
            pairs.entry((s.clone(), r.clone())).or_insert_with(|| {
                let mut p = McPair {
                    sender_node: sn.clone(),
                    receiver_node: rn.clone(),
                    sender: s.clone(),
                    receiver: r.clone(),
                    sent: None,
                    received: 0,
                    loss_pct: None,
                    duplicates: 0,
                    reordered: 0,
                    latency_p50_ms: None,
                    verdict: String::new(),
                    reason: None,
                    cause: None,
                };
                not_measured(&mut p, "no participant reported this pair".into());
                p
            });
        }
    }
    // A pair with a participant that gave no result was not measured, whatever a view says.
    let failed: BTreeMap<&str, &McNode> = nodes
        .iter()
        .filter(|n| n.state != NodeState::Reported)
        .map(|n| (n.name.as_str(), n))
        .collect();
    for p in pairs.values_mut() {
        let bad = failed
            .get(p.sender_node.as_str())
            .or_else(|| failed.get(p.receiver_node.as_str()));
        if let Some(n) = bad {
            let why = format!(
                "the probe on {} gave no result: {}",
                n.name,
                n.reason.as_deref().unwrap_or("no reason given")
            );
            not_measured(p, why);
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

/// A probe's run on the CLI's clock, in seconds from the run's start: when it started, until when
/// it listened for the others (when it made its report), and when it ended. Each probe measures its
/// own durations; the end is when the run saw its pod exited, so node clocks never enter it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub start: f64,
    pub listened_until: f64,
    pub end: f64,
}

impl Window {
    /// From a probe's result (its `duration_ms` and `listened_ms`) and when its pod was seen exited.
    fn of(result: &Value, exited: Duration) -> Option<Window> {
        let secs = |k: &str| result[k].as_u64().map(|ms| ms as f64 / 1000.0);
        let (ran, listened) = (secs("duration_ms")?, secs("listened_ms")?);
        let end = exited.as_secs_f64();
        let start = end - ran;
        Some(Window {
            start,
            listened_until: start + listened.min(ran),
            end,
        })
    }
}

/// How long a receiver must have listened while its sender was up before hearing nothing from it
/// is a finding. Each window is placed from its pod's exit as the watch reported it, which a busy
/// kubelet and API server can delay by a second or two; a probe broadcasts its status ten times a
/// second for as long as it runs.
const TOGETHER_SECS: f64 = 3.0;

/// Why a pair whose receiver heard nothing from its sender was not measured: the receiver stopped
/// listening before the sender was up, or started after it had ended (a probe whose node reached
/// the API late starts late). `None` when they overlapped long enough, or either run is unknown.
fn apart(p: &McPair, windows: &BTreeMap<String, Window>) -> Option<String> {
    let (s, r) = (windows.get(&p.sender)?, windows.get(&p.receiver)?);
    let together = s.end.min(r.listened_until) - s.start.max(r.start);
    (together < TOGETHER_SECS).then(|| {
        format!(
            "the probes on {sn} and {rn} were not up together long enough to measure it: {rn}'s \
             listened from {:.1} s to {:.1} s of the run, {sn}'s ran from {:.1} s to {:.1} s (a \
             probe whose node reached the API late starts late)",
            r.start,
            r.listened_until,
            s.start,
            s.end,
            sn = p.sender_node,
            rn = p.receiver_node,
        )
    })
}

fn not_measured(p: &mut McPair, why: String) {
    p.verdict = NOT_MEASURED.into();
    p.loss_pct = None;
    p.latency_p50_ms = None;
    p.received = 0;
    p.cause = None;
    p.reason = Some(mask_secrets(&why));
}

/// The verdict of a pair nothing measured.
pub const NOT_MEASURED: &str = "not-measured";

/// A cause as the probe serialises it (`code`, `message`, `evidence`), in one line.
fn cause_line(c: &Value) -> String {
    let code = c["code"].as_str().unwrap_or("unknown");
    let message = c["message"].as_str().or_else(|| c.as_str()).unwrap_or("");
    let ev: Vec<&str> = c["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if ev.is_empty() {
        format!("[{code}] {message}")
    } else {
        format!("[{code}] {message} ({})", ev.join("; "))
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
                            match (p.verdict.as_str(), p.loss_pct) {
                                (NOT_MEASURED, _) | (_, None) => "· not measured".into(),
                                ("pass", Some(l)) => format!("✓ {l:.1}% loss"),
                                (_, Some(l)) => format!("✗ {l:.1}% loss"),
                            }
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
        for n in &self.nodes {
            if let Some(why) = n
                .node_firewall
                .as_deref()
                .filter(|f| f.starts_with("could not"))
            {
                writeln!(out, "{}: the node's firewall {why}", n.name)?;
            }
        }
        for p in self.pairs.iter().filter(|p| p.verdict != "pass") {
            match p.loss_pct {
                Some(loss) if p.verdict != NOT_MEASURED => writeln!(
                    out,
                    "✗ {} → {}: {loss:.1}% loss {}",
                    p.sender_node,
                    p.receiver_node,
                    p.cause.as_ref().map(cause_line).unwrap_or_default()
                )?,
                _ => writeln!(
                    out,
                    "· {} → {}: not measured — {}",
                    p.sender_node,
                    p.receiver_node,
                    p.reason.as_deref().unwrap_or("")
                )?,
            }
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

    /// The options of a pod-network run the merge tests read.
    fn pod_network() -> McOptions {
        McOptions {
            host_network: false,
            group: None,
            port: 4444,
            count: 10,
            interval_ms: 10.0,
            ttl: 1,
        }
    }

    #[test]
    fn the_receivers_view_of_a_pair_wins_and_nodes_name_the_cells() {
        let mc = pod_network();
        let pair = |s: &str, r: &str, loss: f64| {
            json!({"sender": s, "receiver": r, "sent": 10, "received": 10 - (loss / 10.0) as u64,
                "loss_pct": loss, "duplicates": 0, "reordered": 0,
                "verdict": if loss > 0.0 { "fail" } else { "pass" },
                "cause": if loss > 0.0 {
                    json!({"code": "firewall", "message": "firewall: INPUT DROP udp dpt:4444 dropped 10 packet(s)",
                        "evidence": ["iptables chain INPUT: -p udp --dport 4444 -j DROP (+10 packets during the probe)"]})
                } else { Value::Null }})
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
        let r = merge(&mc, nodes, &views, &by_ip, &BTreeMap::new());
        let ab = r
            .pairs
            .iter()
            .find(|p| p.sender_node == "a" && p.receiver_node == "b")
            .unwrap();
        assert_eq!(
            (ab.loss_pct, ab.verdict.as_str()),
            (Some(100.0), "fail"),
            "b's own view of a→b"
        );
        assert!(!r.pass);
        let mut t = Vec::new();
        r.render_table(false, &mut t).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(
            t.contains("✗ a → b: 100.0% loss [firewall] firewall: INPUT DROP udp dpt:4444 dropped 10 packet(s) (iptables chain INPUT"),
            "the table shows the cause's code and message: {t}"
        );
    }

    #[test]
    fn pairs_with_a_probe_that_gave_no_result_are_not_measured() {
        let mc = pod_network();
        // a and b measured each other; c's probe could not get its peers; a's view of c→a reads
        // as the probe words a missing sender ("no report").
        let ok = |s: &str, r: &str| {
            json!({"sender": s, "receiver": r, "sent": 10, "received": 10,
            "loss_pct": 0.0, "verdict": "pass"})
        };
        let none = |s: &str, r: &str| {
            json!({"sender": s, "receiver": r, "received": 0, "loss_pct": 100.0,
            "verdict": "fail", "cause": {"code": "no-result", "message": format!("no report from {s}"), "evidence": []}})
        };
        let views = BTreeMap::from([
            (
                "10.0.0.1".to_string(),
                json!({"pairs": [ok("10.0.0.1", "10.0.0.2"), ok("10.0.0.2", "10.0.0.1"), none("10.0.0.3", "10.0.0.1"), none("10.0.0.1", "10.0.0.3")]}),
            ),
            (
                "10.0.0.2".to_string(),
                json!({"pairs": [ok("10.0.0.1", "10.0.0.2"), ok("10.0.0.2", "10.0.0.1")]}),
            ),
        ]);
        let by_ip = BTreeMap::from([
            ("10.0.0.1".to_string(), "a".to_string()),
            ("10.0.0.2".to_string(), "b".to_string()),
            ("10.0.0.3".to_string(), "c".to_string()),
        ]);
        let why = "the probe exited 2 without a result: error: cannot reach the API server at 10.96.0.1:443: connection refused — kube-proxy or the node's firewall";
        let nodes = vec![
            mc_node("a", NodeState::Reported, None, Some("10.0.0.1".into())),
            mc_node("b", NodeState::Reported, None, Some("10.0.0.2".into())),
            mc_node(
                "c",
                NodeState::Error,
                Some(why.into()),
                Some("10.0.0.3".into()),
            ),
        ];
        let r = merge(&mc, nodes, &views, &by_ip, &BTreeMap::new());
        assert_eq!(r.pairs.len(), 6, "every ordered pair of the 3 participants");
        for p in &r.pairs {
            let with_c = p.sender_node == "c" || p.receiver_node == "c";
            if with_c {
                assert_eq!(p.verdict, NOT_MEASURED, "{p:?}");
                assert_eq!(
                    (p.loss_pct, &p.cause),
                    (None, &None),
                    "no loss figure, no cause: {p:?}"
                );
                let reason = p.reason.as_deref().unwrap();
                assert!(
                    reason.contains("the probe on c gave no result")
                        && reason.contains("connection refused"),
                    "{reason}"
                );
            } else {
                assert_eq!(
                    (p.verdict.as_str(), p.loss_pct),
                    ("pass", Some(0.0)),
                    "{p:?}"
                );
            }
        }
        assert!(!r.pass, "a node without a result is no pass");
        let mut t = Vec::new();
        r.render_table(false, &mut t).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(
            t.contains("· c → a: not measured — the probe on c gave no result"),
            "{t}"
        );
        assert!(
            !t.contains("% loss [no-result]") && !t.contains("100.0% loss"),
            "{t}"
        );
        assert!(t.contains("c: error — the probe exited 2"), "{t}");
    }

    /// A receiver that heard nothing from a sender whose probe ran only after it had stopped
    /// listening measured nothing: not-measured with both runs on the run's clock. Where the two
    /// were up together for seconds, the same silence is a finding and stays a failure; where a
    /// run cannot be placed (no durations in its result), nothing is assumed.
    #[test]
    fn a_receiver_that_heard_nothing_from_a_probe_not_up_with_it_measured_nothing() {
        let mc = pod_network();
        let silent = |s: &str, r: &str| {
            json!({"sender": s, "receiver": r, "sent": 40, "received": 0, "loss_pct": 100.0,
                "verdict": "fail", "heard": false,
                "cause": {"code": "unicast", "message": format!("unicast fails too: 0 of 3 unicast probes to {s} answered"), "evidence": []}})
        };
        let views = BTreeMap::from([
            (
                "10.0.0.1".to_string(),
                json!({"pairs": [silent("10.0.0.3", "10.0.0.1")]}),
            ),
            (
                "10.0.0.2".to_string(),
                json!({"pairs": [silent("10.0.0.3", "10.0.0.2")]}),
            ),
            (
                "10.0.0.4".to_string(),
                json!({"pairs": [silent("10.0.0.3", "10.0.0.4")]}),
            ),
        ]);
        let by_ip = BTreeMap::from([
            ("10.0.0.1".to_string(), "a".to_string()),
            ("10.0.0.2".to_string(), "b".to_string()),
            ("10.0.0.3".to_string(), "late".to_string()),
            ("10.0.0.4".to_string(), "d".to_string()),
        ]);
        let nodes: Vec<McNode> = by_ip
            .iter()
            .map(|(ip, n)| mc_node(n, NodeState::Reported, None, Some(ip.clone())))
            .collect();
        let at = |v: Value, exit_s: f64| Window::of(&v, Duration::from_secs_f64(exit_s)).unwrap();
        let run = |ran: u64, listened: u64| json!({"duration_ms": ran, "listened_ms": listened});
        // a listened from 1 s to 7 s; late ran from 11 s to 17 s; b listened from 1 s to 14.5 s.
        let windows = BTreeMap::from([
            ("10.0.0.1".to_string(), at(run(9000, 6000), 10.0)),
            ("10.0.0.2".to_string(), at(run(15000, 13500), 16.0)),
            ("10.0.0.3".to_string(), at(run(6000, 4000), 17.0)),
        ]);
        assert_eq!(
            windows["10.0.0.1"],
            Window {
                start: 1.0,
                listened_until: 7.0,
                end: 10.0
            }
        );
        assert!(Window::of(&json!({"duration_ms": 5}), Duration::ZERO).is_none());
        let r = merge(&mc, nodes, &views, &by_ip, &windows);
        let into = |n: &str| {
            r.pairs
                .iter()
                .find(|p| p.sender_node == "late" && p.receiver_node == n)
                .unwrap()
        };
        let a = into("a");
        assert_eq!(
            (a.verdict.as_str(), a.loss_pct, &a.cause),
            (NOT_MEASURED, None, &None)
        );
        let why = a.reason.as_deref().unwrap();
        assert!(
            why.contains("the probes on late and a were not up together")
                && why.contains("a's listened from 1.0 s to 7.0 s")
                && why.contains("late's ran from 11.0 s to 17.0 s"),
            "{why}"
        );
        // b listened for 3.5 s while late was up and heard nothing: unicast from late fails.
        let b = into("b");
        assert_eq!(
            (b.verdict.as_str(), b.loss_pct),
            ("fail", Some(100.0)),
            "{b:?}"
        );
        assert_eq!(b.cause.as_ref().unwrap()["code"], "unicast");
        // d's run could not be placed: its silence is taken as the probe reported it.
        assert_eq!(into("d").verdict, "fail");
    }

    #[test]
    fn the_peer_list_holds_thousands_of_nodes_and_the_node_limit_is_stated() {
        let peers: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::from([10, 244, (i / 250) as u8, (i % 250) as u8 + 1]))
            .chain([IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 0x1234])])
            .collect();
        let text = encode_peers(&peers);
        assert!(
            text.len() < 1 << 20,
            "fits a ConfigMap: {} bytes",
            text.len()
        );
        assert_eq!(decode_peers("cm", &text).unwrap(), peers);
        assert!(
            decode_peers("cm", "10.0.0.1,not-an-ip")
                .unwrap_err()
                .to_string()
                .contains("not-an-ip")
        );
        assert_eq!(MAX_NODES, 48);
    }

    #[test]
    fn a_node_rule_names_the_pairs_it_breaks_and_an_unread_node_is_said_to_be_unread() {
        use crate::checks::firewall::{
            eval::Hook,
            iptables,
            model::{Family, Origin},
        };
        use crate::multicast::nodefw;
        let mc = McOptions {
            host_network: false,
            group: Some("239.1.1.1".parse().unwrap()),
            port: 4700,
            count: 10,
            interval_ms: 10.0,
            ttl: 1,
        };
        let ips = ["10.244.1.5", "10.244.2.5", "10.244.3.5"];
        let names = ["a", "b", "c"];
        let pair = |s: usize, r: usize, fail: bool| {
            let cause = if fail {
                json!({"code": "unknown", "message": format!("no datagram from {} arrived and nothing on this node explains it: look between the nodes", ips[s]), "evidence": ["route to 239.1.1.1: dev eth0"]})
            } else {
                Value::Null
            };
            json!({"sender": ips[s], "receiver": ips[r], "sent": 10, "received": if fail {0} else {10},
                "loss_pct": if fail {100.0} else {0.0}, "verdict": if fail {"fail"} else {"pass"}, "cause": cause})
        };
        // Everything into c fails; c's node drops forwarded traffic from other nodes' pods.
        let mut views = BTreeMap::new();
        for (r, ip) in ips.iter().enumerate() {
            let pairs: Vec<Value> = (0..3)
                .filter(|&s| s != r)
                .map(|s| pair(s, r, r == 2))
                .collect();
            views.insert(ip.to_string(), json!({"pairs": pairs}));
        }
        let by_ip: BTreeMap<String, String> = ips
            .iter()
            .zip(names)
            .map(|(i, n)| (i.to_string(), n.to_string()))
            .collect();
        let nodes = || {
            (0..3)
                .map(|i| mc_node(names[i], NodeState::Reported, None, Some(ips[i].into())))
                .collect::<Vec<_>>()
        };
        let rules = |t: &str| iptables::parse(t, Origin::IptablesNft, Family::Ip).unwrap();
        let senders: Vec<IpAddr> = ips.iter().map(|i| i.parse().unwrap()).collect();
        let g = mc.group.unwrap();
        let open = rules("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
        let policy = rules(
            "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD ! -s 10.244.3.0/24 -p udp -m udp --dport 4700 -j DROP\nCOMMIT\n",
        );
        let eval = |r: &Ruleset| nodefw::evaluate(r, &senders, g, 4700, Hook::Forward);
        use crate::checks::firewall::model::Ruleset;
        let fw = BTreeMap::from([
            ("a".to_string(), Ok(eval(&open))),
            ("b".to_string(), Ok(eval(&open))),
            ("c".to_string(), Ok(eval(&policy))),
        ]);
        let mut r = merge(&mc, nodes(), &views, &by_ip, &BTreeMap::new());
        join_node_side(&mut r, &fw);
        for p in &r.pairs {
            if p.receiver_node == "c" {
                let c = p.cause.as_ref().unwrap();
                assert_eq!(c["code"], "firewall", "{c}");
                let m = c["message"].as_str().unwrap();
                assert!(
                    m.contains("node c (the receiver's) drops the group's traffic from")
                        && m.contains("filter/FORWARD #1: -A FORWARD ! -s 10.244.3.0/24 -p udp -m udp --dport 4700 -j DROP"),
                    "{m}"
                );
                let ev = c["evidence"].to_string();
                assert!(
                    ev.contains("nothing in the pod's own namespace explains it"),
                    "{ev}"
                );
                assert!(
                    ev.contains(&format!(
                        "node {}'s live ruleset drops nothing",
                        p.sender_node
                    )),
                    "{ev}"
                );
            } else {
                assert_eq!((p.verdict.as_str(), &p.cause), ("pass", &None), "{p:?}");
            }
        }
        assert!(
            r.nodes
                .iter()
                .all(|n| n.node_firewall.as_deref() == Some("read live"))
        );
        // c's rules unread: the pairs into c say so, and claim nothing about them.
        let why = "no CAP_NET_ADMIN (iptables and nft answer EPERM without it)";
        let fw = BTreeMap::from([
            ("a".to_string(), Ok(eval(&open))),
            ("b".to_string(), Ok(eval(&open))),
            ("c".to_string(), Err(why.to_string())),
        ]);
        let mut r = merge(&mc, nodes(), &views, &by_ip, &BTreeMap::new());
        join_node_side(&mut r, &fw);
        for p in r.pairs.iter().filter(|p| p.receiver_node == "c") {
            let c = p.cause.as_ref().unwrap();
            let m = c["message"].as_str().unwrap();
            assert_eq!(c["code"], "unknown");
            assert!(
                m.contains(&format!("node c's firewall could not be read: {why}")),
                "{m}"
            );
            assert!(!m.contains("nothing on this node explains it"), "{m}");
        }
        let mut t = Vec::new();
        r.render_table(false, &mut t).unwrap();
        let t = String::from_utf8(t).unwrap();
        assert!(
            t.contains(&format!("c: the node's firewall could not be read: {why}")),
            "{t}"
        );
    }

    #[test]
    fn the_probe_result_is_found_among_log_noise() {
        let log = "waiting for peers\n{\"not\": \"it\"}\n{\"pairs\": [], \"pass\": true}\n";
        assert_eq!(probe_from_log(log).unwrap()["pass"], true);
    }
}
