//! `fleet check` and `fleet cleanup`: the node checks on every node of a cluster, through one bare
//! Pod per node that the CLI creates, watches, reads back from its log and deletes.

mod compact;
mod mcast;
mod pod;
mod report;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, PostParams},
    core::ObjectMeta,
};

pub use compact::{encode as compact_report, encode_probe as compact_probe};
pub use mcast::{McFleetReport, McOptions, McPair, PROBE_ACCOUNT, peers_from_configmap};
pub use pod::{
    HOST_MOUNT, MANAGED_BY, PodState, PodTemplate, RUN_LABEL, TERMINATION_LOG, managed_selector,
    pod_state,
};
pub use report::{FleetReport, NodeOutcome, NodeState, report_from_log, schema};

use crate::{
    checks::cluster::connect, core::config::Config, mask::mask_secrets, report::ClusterInfo,
};

/// The Pod Security label a namespace needs for host-namespace, hostPath pods.
pub const PSA_LABEL: (&str, &str) = ("pod-security.kubernetes.io/enforce", "privileged");
/// API requests one run keeps in flight at once (pod creates, log reads).
const IN_FLIGHT: usize = 16;
/// A pod log larger than this is cut (a node report is a few hundred KiB at most).
const LOG_LIMIT: i64 = 8 << 20;
/// How long one attempt to read a pod log may take.
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What `fleet check` does beyond a plain `check`'s config (kubeconfig, context, output).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Only these nodes (empty: every node the selector picks).
    pub nodes: Vec<String>,
    /// A label selector for the nodes.
    pub selector: Option<String>,
    pub namespace: String,
    pub image: String,
    /// How long pods may take to start and finish, in all.
    pub timeout: Duration,
    /// Leave the pods in place afterwards.
    pub keep: bool,
    /// The arguments of `k8sdoctor check` inside each pod (after `check`).
    pub check_args: Vec<String>,
}

/// Where progress goes (stderr in the CLI): "N of M nodes done" and the like.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn client(cfg: &Config) -> Result<(Client, ClusterInfo)> {
    let target = connect::find(cfg).map_err(|e| anyhow!("{e}"))?;
    let info = ClusterInfo {
        server: mask_secrets(&target.server),
        server_version: None,
        context: target.context.clone(),
    };
    let client = connect::client(target, cfg.timeout)
        .await
        .map_err(|f| anyhow!("{} ({}): {}", f.server, f.layer.as_str(), f.message))?;
    Ok((client, info))
}

fn api_err(what: &str, e: kube::Error) -> anyhow::Error {
    let text = match &e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => format!("{other:#}"),
    };
    anyhow!("{what}: {}", mask_secrets(&text))
}

/// A run id unique enough to tell runs apart in labels (lowercase, DNS-label safe).
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{:x}{:04x}",
        (nanos / 1_000_000) & 0xffff_ffff,
        std::process::id() & 0xffff
    )
}

/// Check ids in `--only`/`--skip` that no node check has (a typo would fail on every node).
pub fn unknown_ids(only: &[String], skip: &[String]) -> Result<()> {
    let known: Vec<&str> = crate::checks::registry().map(|c| c.id).collect();
    let sel = crate::core::config::Selection {
        only: only.to_vec(),
        skip: skip.to_vec(),
    };
    let unknown = sel.unknown_ids(&known);
    if !unknown.is_empty() {
        bail!(
            "unknown check id(s): {} (see `k8sdoctor list`)",
            unknown.join(", ")
        );
    }
    Ok(())
}

/// Runs the node checks on every selected node and gathers one fleet report. `stop` (set by
/// Ctrl-C) ends the wait early; the run's pods are deleted on every path unless `keep`.
pub fn check(
    cfg: &Config,
    opts: &FleetOptions,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Result<FleetReport> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (client, mut info) = client(cfg).await?;
        info.server_version = client.apiserver_version().await.ok().map(|v| v.git_version);
        let run = run_id();
        let outcome = fan_out(&client, opts, &run, &stop, progress).await;
        if !opts.keep {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
            let lp = ListParams::default().labels(&pod::run_selector(&run));
            if let Err(e) = pods.delete_collection(&DeleteParams::default(), &lp).await {
                progress(&format!(
                    "could not delete this run's pods: {}; run `k8sdoctor fleet cleanup`",
                    api_err("delete", e)
                ));
            }
        }
        outcome.map(|nodes| (info, run, nodes))
    });
    rt.shutdown_background();
    let (info, run, nodes) = result?;
    let started_at = jiff::Timestamp::try_from(started)
        .map(|t| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string())
        .unwrap_or_default();
    Ok(FleetReport::new(
        started_at,
        clock.elapsed().as_millis() as u64,
        Some(info),
        opts.namespace.clone(),
        run,
        nodes,
    ))
}

/// The nodes to check: `--nodes` (each must exist) or every node matching `--selector`.
async fn select_nodes(client: &Client, opts: &FleetOptions) -> Result<Vec<Node>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut lp = ListParams::default().limit(500);
    if let Some(sel) = &opts.selector {
        lp = lp.labels(sel);
    }
    let mut nodes = Vec::new();
    loop {
        let page = api.list(&lp).await.map_err(|e| api_err("list nodes", e))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        nodes.extend(page.items);
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    if !opts.nodes.is_empty() {
        let unknown: Vec<&str> = opts
            .nodes
            .iter()
            .filter(|n| {
                !nodes
                    .iter()
                    .any(|x| x.metadata.name.as_deref() == Some(n.as_str()))
            })
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!("--nodes: no such node(s): {}", unknown.join(", "));
        }
        nodes.retain(|n| {
            opts.nodes
                .iter()
                .any(|x| Some(x.as_str()) == n.metadata.name.as_deref())
        });
    }
    if nodes.is_empty() {
        bail!("no node matches the selection");
    }
    Ok(nodes)
}

fn node_not_ready(n: &Node) -> Option<String> {
    let ready = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (ready.status != "True").then(|| {
        format!(
            "node NotReady ({}): its kubelet runs no new pods",
            ready.reason.as_deref().unwrap_or("Ready is not True")
        )
    })
}

/// Makes sure the namespace exists (created with the Pod Security label the pods need).
async fn ensure_namespace(client: &Client, name: &str, progress: Progress<'_>) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api
        .get_opt(name)
        .await
        .map_err(|e| api_err(&format!("get namespace {name}"), e))?
        .is_some()
    {
        return Ok(());
    }
    progress(&format!("creating namespace {name}"));
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([(PSA_LABEL.0.to_string(), PSA_LABEL.1.to_string())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .map_err(|e| api_err(&format!("create namespace {name}"), e))?;
    Ok(())
}

/// Deletes pods of earlier runs that have finished or outlived their deadline.
async fn sweep_stale(pods: &Api<Pod>, progress: Progress<'_>) -> Result<()> {
    let list = pods
        .list(&ListParams::default().labels(&managed_selector()))
        .await
        .map_err(|e| api_err("list earlier doctor pods", e))?;
    let now = jiff::Timestamp::now();
    for p in list.items {
        let done = matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let deadline = p
            .spec
            .as_ref()
            .and_then(|s| s.active_deadline_seconds)
            .unwrap_or(0);
        let overdue = p
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|t| (now - t.0).get_seconds() > deadline + 60);
        if let (true, Some(name)) = (done || overdue, p.metadata.name.as_deref()) {
            progress(&format!("deleting stale pod {name} of an earlier run"));
            let _ = pods.delete(name, &DeleteParams::default()).await;
        }
    }
    Ok(())
}

/// Creates the pods, waits for them, and turns each node's pod into its outcome.
async fn fan_out(
    client: &Client,
    opts: &FleetOptions,
    run: &str,
    stop: &AtomicBool,
    progress: Progress<'_>,
) -> Result<Vec<NodeOutcome>> {
    let nodes = select_nodes(client, opts).await?;
    ensure_namespace(client, &opts.namespace, progress).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    sweep_stale(&pods, progress).await?;
    let template = PodTemplate {
        namespace: opts.namespace.clone(),
        run_id: run.to_string(),
        image: opts.image.clone(),
        args: opts.check_args.clone(),
        deadline_secs: opts.timeout.as_secs().max(1) as i64,
    };
    // A server-side dry run shows a Pod Security, webhook or quota rejection before any node is touched.
    let first = nodes[0].metadata.name.clone().unwrap_or_default();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    if let Err(e) = pods.create(&dry, &template.pod_for(0, &first)).await {
        return Err(rejected(&opts.namespace, e));
    }
    let mut outcomes: Vec<NodeOutcome> = Vec::new();
    let mut waiting: Vec<(String, String)> = Vec::new(); // (node, pod)
    // Pods are created concurrently, a bounded number in flight (an API server rate-limits a burst).
    let mut ready = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = n.metadata.name.clone().unwrap_or_default();
        match node_not_ready(n) {
            Some(why) => outcomes.push(absent(&name, why)),
            None => ready.push((name.clone(), template.pod_for(i, &name))),
        }
    }
    let created: Vec<_> = stream::iter(ready)
        .map(|(name, pod)| {
            let pods = pods.clone();
            async move { (name, pods.create(&PostParams::default(), &pod).await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    for (name, r) in created {
        match r {
            Ok(p) => waiting.push((name, p.metadata.name.unwrap_or_default())),
            Err(e) => outcomes.push(NodeOutcome {
                name,
                state: NodeState::Error,
                reason: Some(format!("{:#}", api_err("creating its pod failed", e))),
                report: None,
            }),
        }
    }
    let total = nodes.len();
    progress(&format!("{} pods created on {total} nodes", waiting.len()));
    let deadline = Instant::now() + opts.timeout + Duration::from_secs(5);
    let mut last_done = usize::MAX;
    while !waiting.is_empty() {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        let list = pods
            .list(&ListParams::default().labels(&pod::run_selector(run)))
            .await
            .map_err(|e| api_err("list this run's pods", e))?;
        let mut still = Vec::new();
        let mut exited = Vec::new();
        for (node, name) in waiting {
            let Some(p) = list
                .items
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&name))
            else {
                outcomes.push(NodeOutcome {
                    name: node,
                    state: NodeState::Error,
                    reason: Some(format!("pod {name} disappeared before it finished")),
                    report: None,
                });
                continue;
            };
            match pod_state(p) {
                PodState::Waiting(why) if Instant::now() < deadline => {
                    still.push((node, name, why))
                }
                PodState::Waiting(why) => outcomes.push(absent(
                    &node,
                    format!("pod still not finished at the deadline ({why})"),
                )),
                PodState::NeverRan(why) => outcomes.push(absent(&node, why)),
                PodState::Stopped(why) => outcomes.push(NodeOutcome {
                    name: node,
                    state: NodeState::Error,
                    reason: Some(why),
                    report: None,
                }),
                PodState::Exited(code) => exited.push((node, name, code, pod::termination(p))),
            }
        }
        let read: Vec<NodeOutcome> = stream::iter(exited)
            .map(|(node, name, code, term)| {
                let pods = pods.clone();
                async move { read_back(&pods, node, &name, code, &term).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        outcomes.extend(read);
        let done = total - still.len();
        if done != last_done {
            progress(&format!("{done} of {total} nodes done"));
            last_done = done;
        }
        waiting = still.into_iter().map(|(n, p, _)| (n, p)).collect();
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(outcomes)
}

fn absent(node: &str, why: String) -> NodeOutcome {
    NodeOutcome {
        name: node.to_string(),
        state: NodeState::Absent,
        reason: Some(why),
        report: None,
    }
}

/// A pod's log (its container's output), capped. Each attempt is bounded and a failed one is
/// tried once more: the API server proxies the read to the node's kubelet, which a node firewall
/// can make hang until the proxy's dial times out.
async fn read_log(pods: &Api<Pod>, pod: &str) -> Result<String> {
    let lp = LogParams {
        container: Some(pod::CONTAINER.into()),
        limit_bytes: Some(LOG_LIMIT),
        ..Default::default()
    };
    let mut last = anyhow!("reading the pod log failed");
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match tokio::time::timeout(LOG_READ_TIMEOUT, pods.logs(pod, &lp)).await {
            Ok(Ok(log)) => return Ok(log),
            Ok(Err(e)) => last = api_err("reading the pod log failed", e),
            Err(_) => {
                last = anyhow!(
                    "reading the pod log failed: no answer in {} s",
                    LOG_READ_TIMEOUT.as_secs()
                )
            }
        }
    }
    Err(last)
}

/// A node whose pod exited: its report from the log (exit 0 or 1), or the error it printed; when
/// the log cannot be read, the compact report of its termination message.
async fn read_back(
    pods: &Api<Pod>,
    node: String,
    pod: &str,
    code: i32,
    term: &compact::Termination,
) -> NodeOutcome {
    let log = match read_log(pods, pod).await {
        Ok(l) => l,
        Err(e) => return compact::fallback(node, &format!("{e:#}"), term),
    };
    match (code, report_from_log(&log)) {
        (0 | 1, Some(report)) => NodeOutcome {
            name: node,
            state: NodeState::Reported,
            reason: None,
            report: Some(report),
        },
        (_, _) => {
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            NodeOutcome {
                name: node,
                state: NodeState::Error,
                reason: Some(format!(
                    "the pod exited {code} without a report{}",
                    if tail.is_empty() {
                        " and printed nothing".to_string()
                    } else {
                        format!(": {}", tail.join(" | "))
                    }
                )),
                report: None,
            }
        }
    }
}

/// Turns a dry-run rejection into one message with the fix.
fn rejected(namespace: &str, e: kube::Error) -> anyhow::Error {
    let kube::Error::Api(s) = &e else {
        return api_err("the dry-run create of the doctor's pod failed", e);
    };
    let msg = mask_secrets(&s.message);
    let fix = if msg.contains("PodSecurity") {
        format!(
            "label the namespace for host-namespace pods: kubectl label namespace {namespace} {}={} --overwrite",
            PSA_LABEL.0, PSA_LABEL.1
        )
    } else if msg.contains("quota") {
        format!("raise or remove the ResourceQuota in namespace {namespace}, or use --namespace")
    } else if msg.contains("admission webhook") {
        format!("exempt namespace {namespace} from the webhook, or use --namespace")
    } else if s.code == 403 {
        "grant the permissions in deploy/clusterrole.yaml to the user of the kubeconfig".to_string()
    } else {
        "see the message above".to_string()
    };
    anyhow!(
        "the API server rejects the doctor's pods in namespace {namespace} (dry run, nothing was created): {} {}: {msg}\n  fix: {fix}",
        s.code,
        s.reason
    )
}

/// Runs the multicast probe on every selected node (one pod each) and merges every view.
pub fn multicast(
    cfg: &Config,
    opts: &FleetOptions,
    mc: &McOptions,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Result<McFleetReport> {
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (client, _) = client(cfg).await?;
        let run = run_id();
        let r = mcast::fan_out(&client, opts, mc, &run, &stop, progress).await;
        if !opts.keep {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
            let lp = ListParams::default().labels(&pod::run_selector(&run));
            if let Err(e) = pods.delete_collection(&DeleteParams::default(), &lp).await {
                progress(&format!(
                    "could not delete this run's pods: {}; run `k8sdoctor fleet cleanup`",
                    api_err("delete", e)
                ));
            }
        }
        r
    });
    rt.shutdown_background();
    result
}

/// Deletes every doctor pod in the namespace; returns how many there were.
pub fn cleanup(cfg: &Config, namespace: &str) -> Result<usize> {
    let rt = runtime()?;
    let n = rt.block_on(async {
        let (client, _) = client(cfg).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let lp = ListParams::default().labels(&managed_selector());
        let n = pods
            .list(&lp)
            .await
            .map_err(|e| api_err("list doctor pods", e))?
            .items
            .len();
        if n > 0 {
            pods.delete_collection(&DeleteParams::default(), &lp)
                .await
                .map_err(|e| api_err("delete doctor pods", e))?;
        }
        // Participant lists of multicast runs that were interrupted.
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client, namespace);
        if let Ok(list) = cms.list(&lp).await {
            for cm in list.items {
                if let Some(name) = cm.metadata.name {
                    let _ = cms.delete(&name, &DeleteParams::default()).await;
                }
            }
        }
        Ok::<_, anyhow::Error>(n)
    });
    rt.shutdown_background();
    n
}
