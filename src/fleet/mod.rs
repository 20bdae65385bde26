//! `fleet check` and `fleet cleanup`: the node checks on every node of a cluster, through one bare
//! Pod per node that the CLI creates, watches, reads back from its log and deletes.

mod compact;
mod matrix;
mod mcast;
mod pod;
mod report;
mod retry;
mod sink;

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, stream};
use k8s_openapi::{
    api::core::v1::{ConfigMap, LocalObjectReference, Namespace, Node, Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams},
    core::ObjectMeta,
};

pub use compact::{encode as compact_report, encode_probe as compact_probe};
pub use matrix::{Keep, Matrix};
pub use mcast::{McFleetReport, McOptions, McPair, PROBE_ACCOUNT, peers_from_configmap};
pub use pod::{
    HOST_MOUNT, MANAGED_BY, PodState, PodTemplate, RUN_LABEL, TERMINATION_LOG, managed_selector,
    pod_state,
};
pub use report::{FleetReport, NodeOutcome, NodeState, report_from_log, schema};
pub use sink::Output;
use sink::{NodeBundle, Sink};

use crate::{
    checks::cluster::connect,
    core::{check::DynCheck, config::Config},
    mask::mask_secrets,
    report::ClusterInfo,
};

/// The Pod Security label a namespace needs for host-namespace, hostPath pods.
pub const PSA_LABEL: (&str, &str) = ("pod-security.kubernetes.io/enforce", "privileged");
/// API requests one run keeps in flight at once (pod creates, log reads).
const IN_FLIGHT: usize = 16;
/// A pod log larger than this is cut (a node report is a few hundred KiB at most).
const LOG_LIMIT: i64 = 8 << 20;
/// The parameters of every create and delete (kube's functions borrow them across retries).
const CREATE: PostParams = PostParams {
    dry_run: false,
    field_manager: None,
};
const DELETE: DeleteParams = DeleteParams {
    dry_run: false,
    grace_period_seconds: None,
    propagation_policy: None,
    preconditions: None,
};
/// How long one attempt to read a pod log may take: the API server proxies the read to the node's
/// kubelet, which a node firewall can make hang until the proxy's dial times out (then the
/// termination message stands in).
const LOG_TIME: Duration = Duration::from_secs(10);

/// What `fleet check` does beyond a plain `check`'s config (kubeconfig, context, output).
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Only these nodes (empty: every node the selector picks).
    pub nodes: Vec<String>,
    /// A label selector for the nodes.
    pub selector: Option<String>,
    pub namespace: String,
    /// The doctor's image per node architecture.
    pub images: Images,
    /// A Secret in the namespace the kubelets pull the image with.
    pub pull_secret: Option<String>,
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

/// Runs the node checks on every selected node. Each node's outcome goes to `output` as it
/// arrives (the JSON document is written as the run goes); the matrix that comes back is what the
/// other formats render. `stop` (set by Ctrl-C) ends the wait early; the run's pods are deleted on
/// every path unless `keep`.
pub fn check(
    cfg: &Config,
    opts: &FleetOptions,
    stop: Arc<AtomicBool>,
    progress: Progress,
    output: Output<'_>,
) -> Result<Matrix> {
    let started_at = sink::now_rfc3339();
    let clock = Instant::now();
    let rt = runtime()?;
    let result = rt.block_on(async {
        let (client, mut info) = client(cfg).await?;
        info.server_version = client.apiserver_version().await.ok().map(|v| v.git_version);
        let run = run_id();
        let header = report::Header {
            started_at,
            cluster: Some(info),
            namespace: opts.namespace.clone(),
            run_id: run.clone(),
        };
        let mut sink = Sink::begin(output, &header)?;
        let outcome = fan_out(&client, cfg.timeout, opts, &run, &stop, progress, &mut sink).await;
        if !opts.keep {
            delete_run(&client, &opts.namespace, &run, progress).await;
        }
        outcome?;
        sink.finish(clock.elapsed().as_millis() as u64)
    });
    rt.shutdown_background();
    result
}

/// `fleet check --from-bundle FILE`: the fleet report again from a fleet bundle alone (no
/// cluster, no network): each node's bundle evaluated with this build's checks, the nodes that
/// sent none as the recording named them. The archive is checked whole first; a damaged one is an
/// error naming the problem before anything is written.
pub fn replay(cfg: &Config, extra: &[DynCheck], path: &Path, output: Output<'_>) -> Result<Matrix> {
    use crate::bundle::fleet as archive;
    let clock = Instant::now();
    let shown = || format!("--from-bundle {}", path.display());
    let m = archive::verify(path).with_context(shown)?;
    let header = report::Header {
        started_at: m.run.started_at.clone(),
        cluster: serde_json::from_value(m.run.cluster.clone()).unwrap_or_default(),
        namespace: m.run.namespace.clone(),
        run_id: m.run.run_id.clone(),
    };
    let mut sink = Sink::begin(output, &header)?;
    archive::each_node(path, &m, |n, bundle| {
        let outcome = match bundle {
            Some(b) => NodeOutcome {
                name: n.name.clone(),
                state: NodeState::Reported,
                reason: n.reason.clone(),
                report: Some(
                    crate::bundle::replay_bundle(cfg, extra, b)
                        .with_context(|| format!("node {}", n.name))?,
                ),
            },
            None => {
                let state = match n.state.as_str() {
                    "absent" => NodeState::Absent,
                    _ => NodeState::Error,
                };
                let why = n.reason.clone().or_else(|| n.no_bundle.clone());
                let reason = match (n.state.as_str(), why) {
                    ("absent" | "error", Some(w)) => w,
                    (_, w) => format!(
                        "no bundle was recorded for this node: {}",
                        n.no_bundle.clone().or(w).unwrap_or_default()
                    ),
                };
                NodeOutcome {
                    name: n.name.clone(),
                    state,
                    reason: Some(reason),
                    report: None,
                }
            }
        };
        sink.add(outcome, None)
    })
    .with_context(shown)?;
    sink.finish(clock.elapsed().as_millis() as u64)
}

/// The container image per node architecture: `--image REF` for every architecture, or
/// `--image amd64=REF --image arm64=REF` (the two may be combined: the plain one is the fallback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Images {
    any: Option<String>,
    by_arch: std::collections::BTreeMap<String, String>,
}

impl Images {
    /// Parses the `--image` values.
    pub fn parse(values: &[String]) -> Result<Images> {
        let mut images = Images::default();
        for v in values {
            // A reference never holds '=', so `arch=` is the only reading of one.
            match v.split_once('=') {
                Some((arch, r)) if !arch.is_empty() && !r.is_empty() => {
                    if !arch.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        bail!("--image {v:?}: {arch:?} is not an architecture (amd64, arm64, ...)");
                    }
                    if images.by_arch.insert(arch.into(), r.into()).is_some() {
                        bail!("--image: two images for {arch}");
                    }
                }
                Some(_) => bail!("--image {v:?}: give ARCH=REF or REF"),
                None if images.any.is_some() => bail!("--image: two images for every architecture"),
                None => images.any = Some(v.clone()),
            }
        }
        if images.any.is_none() && images.by_arch.is_empty() {
            bail!("--image: no image given");
        }
        Ok(images)
    }

    /// The image for nodes of this architecture (`kubernetes.io/arch`).
    pub fn for_arch(&self, arch: &str) -> Option<&str> {
        self.by_arch
            .get(arch)
            .or(self.any.as_ref())
            .map(String::as_str)
    }

    /// Any one of them (the dry run's).
    fn first(&self) -> &str {
        self.any
            .as_deref()
            .or_else(|| self.by_arch.values().next().map(String::as_str))
            .unwrap_or_default()
    }
}

/// What the run needs of one selected node (not its whole object: 2,000 nodes' worth is a lot).
#[derive(Debug, Clone)]
struct Picked {
    name: String,
    arch: String,
    not_ready: Option<String>,
}

/// Only Linux nodes run the doctor's image (the kubelet labels every node with its OS).
const LINUX: &str = "kubernetes.io/os=linux";
/// Nodes per page of a list.
const PAGE: u32 = 500;

/// The nodes to check: `--nodes` (each must exist) or every Linux node matching `--selector`,
/// listed in pages, each page retried on transient errors.
async fn select_nodes(client: &Client, opts: &FleetOptions) -> Result<Vec<Picked>> {
    let api: Api<Node> = Api::all(client.clone());
    let sel = match &opts.selector {
        Some(s) if !s.trim().is_empty() => format!("{s},{LINUX}"),
        _ => LINUX.to_string(),
    };
    let mut lp = ListParams::default().limit(PAGE).labels(&sel);
    let deadline = Instant::now() + opts.timeout;
    let mut nodes = Vec::new();
    loop {
        let page = retry::until(deadline, || api.list(&lp))
            .await
            .map_err(|e| api_err("list nodes", e))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for n in page.items {
            let name = n.metadata.name.clone().unwrap_or_default();
            if !opts.nodes.is_empty() && !opts.nodes.contains(&name) {
                continue;
            }
            let arch = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/arch").cloned())
                .or_else(|| Some(n.status.as_ref()?.node_info.as_ref()?.architecture.clone()))
                .unwrap_or_default();
            nodes.push(Picked {
                not_ready: node_not_ready(&n),
                name,
                arch,
            });
        }
        match next {
            Some(c) => lp = lp.continue_token(&c),
            None => break,
        }
    }
    if !opts.nodes.is_empty() {
        let unknown: Vec<&str> = opts
            .nodes
            .iter()
            .filter(|n| !nodes.iter().any(|x| &x.name == *n))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!("--nodes: no such Linux node(s): {}", unknown.join(", "));
        }
    }
    if nodes.is_empty() {
        bail!("no Linux node ({LINUX}) matches the selection");
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

/// Why a node gets no pod before any is created: NotReady, or no image for its architecture.
fn cannot_run(n: &Picked, images: &Images) -> Option<String> {
    if let Some(why) = &n.not_ready {
        return Some(why.clone());
    }
    if images.for_arch(&n.arch).is_none() {
        let arch = if n.arch.is_empty() {
            "an unknown architecture"
        } else {
            &n.arch
        };
        return Some(format!("no image for {arch}: give --image {arch}=REF"));
    }
    None
}

/// Makes sure the namespace exists (created with the Pod Security label the pods need).
async fn ensure_namespace(client: &Client, name: &str, progress: Progress<'_>) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    if retry::until(deadline, || api.get_opt(name))
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

/// Deletes, in one request, the pods of earlier runs that have finished (a pod past its
/// activeDeadlineSeconds is failed by its kubelet, so it is swept by the next run).
async fn sweep_stale(pods: &Api<Pod>, progress: Progress<'_>) -> Result<()> {
    let lp = ListParams::default()
        .labels(&managed_selector())
        .fields("status.phase!=Pending,status.phase!=Running");
    let deadline = Instant::now() + Duration::from_secs(30);
    match retry::until(deadline, || pods.delete_collection(&DELETE, &lp)).await {
        Ok(either) => {
            let n = either.left().map_or(0, |l| l.items.len());
            if n > 0 {
                progress(&format!("deleted {n} finished pod(s) of earlier runs"));
            }
            Ok(())
        }
        Err(e) => Err(api_err("delete the finished pods of earlier runs", e)),
    }
}

/// The ConfigMap that owns every object of one run: deleting it deletes them all (the garbage
/// collector follows the pods' ownerReferences), so a run whose CLI died is one delete away.
async fn create_owner(
    cms: &Api<ConfigMap>,
    run: &str,
    data: &[(&str, String)],
) -> Result<OwnerReference> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("k8sdoctor-{run}")),
            labels: Some(
                [
                    (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
                    (RUN_LABEL.to_string(), run.to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let made = create_once(cms, &cm, deadline)
        .await
        .map_err(|e| api_err("create the run's ConfigMap", e))?;
    Ok(OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: made.metadata.name.unwrap_or_default(),
        uid: made.metadata.uid.unwrap_or_default(),
        ..Default::default()
    })
}

/// Creates a ConfigMap of this run, retried: a create whose answer was lost (a connection reset
/// after the server stored it) meets 409 on the next try, and the object is then ours (the run's
/// id is in its name): read back, not a failure.
async fn create_once(
    cms: &Api<ConfigMap>,
    cm: &ConfigMap,
    deadline: Instant,
) -> Result<ConfigMap, kube::Error> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let mut tries = 0;
    retry::until(deadline, || {
        tries += 1;
        let again = tries > 1;
        let name = name.clone();
        async move {
            match cms.create(&CREATE, cm).await {
                Err(kube::Error::Api(s)) if s.code == 409 && again => cms.get(&name).await,
                other => other,
            }
        }
    })
    .await
}

/// Deletes the run's pods (one deletecollection) and its ConfigMaps, retried; says what is left.
async fn delete_run(client: &Client, ns: &str, run: &str, progress: Progress<'_>) {
    let lp = ListParams::default().labels(&pod::run_selector(run));
    let deadline = Instant::now() + Duration::from_secs(20);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    if let Err(e) = retry::until(deadline, || pods.delete_collection(&DELETE, &lp)).await {
        progress(&format!(
            "could not delete this run's pods: {}; run `k8sdoctor fleet cleanup`",
            api_err("delete", e)
        ));
    }
    // The run's owner and participant ConfigMaps, by the run's label: one deletecollection.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let background = DeleteParams::background();
    if let Err(e) = retry::until(deadline, || cms.delete_collection(&background, &lp)).await {
        progress(&format!(
            "could not delete this run's ConfigMaps: {}; run `k8sdoctor fleet cleanup`",
            api_err("delete", e)
        ));
    }
}

/// The run's pod for a node: the template's, with the node's image, the pull secret and the owner.
fn finish_pod(
    mut pod: Pod,
    image: &str,
    opts: &FleetOptions,
    owner: Option<&OwnerReference>,
) -> Pod {
    if let Some(o) = owner {
        pod.metadata.owner_references = Some(vec![o.clone()]);
    }
    if let Some(spec) = pod.spec.as_mut() {
        if let Some(s) = &opts.pull_secret {
            spec.image_pull_secrets = Some(vec![LocalObjectReference { name: s.clone() }]);
        }
        for c in &mut spec.containers {
            c.image = Some(image.to_string());
        }
    }
    pod
}

/// How long an image pull may fail and back off before the node counts as absent: a registry's
/// 429 or a slow mirror often clears within it.
fn pull_grace(timeout: Duration) -> Duration {
    (timeout / 3).min(Duration::from_secs(30))
}

/// A pod whose image pull fails right now (ErrImagePull, ImagePullBackOff).
fn pulling_fails(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .any(|r| matches!(r, "ErrImagePull" | "ImagePullBackOff"))
}

/// The run's pods as a watch sees them: one paged list, then a watch from its resourceVersion,
/// re-opened when it ends or fails and re-listed when the server has compacted it away (410).
struct RunWatch<T = Pod> {
    api: Api<Pod>,
    /// What of each pod is kept: a page of whole Pods at a time is decoded, never the run's.
    reduce: fn(&Pod) -> T,
    selector: String,
    rv: String,
    stream: Option<futures::stream::LocalBoxStream<'static, kube::Result<WatchEvent<Pod>>>>,
    /// Transient failures in a row (for the pause before the next try).
    failures: u32,
    /// Where retrying stops.
    deadline: Instant,
    /// How long one watch request may last (below the client's read timeout).
    watch_secs: u32,
    /// When the current watch was opened: one the server has not ended well past its
    /// timeoutSeconds is dropped and opened again.
    opened: Instant,
}

/// What the loop needs of a pod as seen: its name and state, whether its pull is failing, and
/// its termination message (a whole Pod is several KiB; thousands of them are not kept).
struct Seen {
    name: String,
    state: PodState,
    pull_failing: bool,
    termination: compact::Termination,
}

impl Seen {
    fn of(p: &Pod) -> Seen {
        Seen {
            name: p.metadata.name.clone().unwrap_or_default(),
            state: pod_state(p),
            pull_failing: pulling_fails(p),
            termination: pod::termination(p),
        }
    }
}

/// What the watch saw (each pod as the watch's `reduce` made it).
enum Change<T = Pod> {
    Pod(Box<T>),
    Gone(String),
    /// The watch had to start over: the run's pods as listed.
    Relisted(Vec<T>),
    /// Nothing within the wait.
    Idle,
}

impl RunWatch {
    fn new(api: Api<Pod>, run: &str, deadline: Instant, read_timeout: Duration) -> RunWatch {
        RunWatch::reducing(api, run, deadline, read_timeout, Pod::clone)
    }
}

impl<T> RunWatch<T> {
    fn reducing(
        api: Api<Pod>,
        run: &str,
        deadline: Instant,
        read_timeout: Duration,
        reduce: fn(&Pod) -> T,
    ) -> RunWatch<T> {
        RunWatch {
            api,
            reduce,
            selector: pod::run_selector(run),
            rv: String::new(),
            stream: None,
            failures: 0,
            deadline,
            watch_secs: (read_timeout.as_secs().saturating_sub(1)).clamp(1, 290) as u32,
            opened: Instant::now(),
        }
    }

    /// Every pod of the run, in pages, each page retried; the watch continues from here.
    async fn list(&mut self) -> Result<Vec<T>> {
        let mut lp = ListParams::default().labels(&self.selector).limit(PAGE);
        let mut pods = Vec::new();
        loop {
            let page = retry::until(self.deadline, || self.api.list(&lp))
                .await
                .map_err(|e| api_err("list this run's pods", e))?;
            self.rv = page.metadata.resource_version.clone().unwrap_or_default();
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            // Each pod is reduced as its page arrives: a page of Pods at a time, not the run's.
            pods.extend(page.items.iter().map(self.reduce));
            match next {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        self.stream = None;
        Ok(pods)
    }

    /// The next change, waiting at most `wait`.
    async fn next(&mut self, wait: Duration) -> Result<Change<T>> {
        let until = Instant::now() + wait;
        loop {
            if self.opened.elapsed() > Duration::from_secs(u64::from(self.watch_secs) + 3) {
                self.stream = None;
            }
            if self.stream.is_none() {
                self.opened = Instant::now();
                let wp = WatchParams::default()
                    .labels(&self.selector)
                    .timeout(self.watch_secs);
                match self.api.watch(&wp, &self.rv).await {
                    Ok(s) => self.stream = Some(s.boxed_local()),
                    Err(e) => {
                        self.failed(e, until).await?;
                        if Instant::now() >= until {
                            return Ok(Change::Idle);
                        }
                        continue;
                    }
                }
            }
            let stream = self.stream.as_mut().expect("opened above");
            let left = until.saturating_duration_since(Instant::now());
            let ev = match tokio::time::timeout(left, stream.next()).await {
                Err(_) => return Ok(Change::Idle),
                Ok(None) => {
                    self.stream = None; // the watch's timeoutSeconds ended it: re-open
                    continue;
                }
                Ok(Some(ev)) => ev,
            };
            let set_rv = |rv: &mut String, p: &Pod| {
                if let Some(v) = &p.metadata.resource_version {
                    rv.clone_from(v);
                }
            };
            match ev {
                Ok(WatchEvent::Added(p) | WatchEvent::Modified(p)) => {
                    self.failures = 0;
                    set_rv(&mut self.rv, &p);
                    return Ok(Change::Pod(Box::new((self.reduce)(&p))));
                }
                Ok(WatchEvent::Deleted(p)) => {
                    set_rv(&mut self.rv, &p);
                    return Ok(Change::Gone(p.metadata.name.unwrap_or_default()));
                }
                Ok(WatchEvent::Bookmark(b)) => self.rv = b.metadata.resource_version,
                Ok(WatchEvent::Error(s)) if s.code == 410 => {
                    return Ok(Change::Relisted(self.list().await?));
                }
                Ok(WatchEvent::Error(s)) => {
                    self.stream = None;
                    self.failed(kube::Error::Api(s), until).await?;
                }
                Err(e) => {
                    self.stream = None;
                    self.failed(e, until).await?;
                }
            }
        }
    }

    /// A failed watch: a 410 means re-list (on the next call), a transient error a pause, any
    /// other error (or transient ones past the deadline) ends the run.
    async fn failed(&mut self, e: kube::Error, until: Instant) -> Result<()> {
        if matches!(&e, kube::Error::Api(s) if s.code == 410) {
            self.rv.clear();
            return Ok(());
        }
        match retry::classify(&e) {
            retry::Next::Retry(after) if Instant::now() < self.deadline => {
                let pause = retry::pause(self.failures, after);
                self.failures += 1;
                tokio::time::sleep_until(
                    (Instant::now() + pause)
                        .min(until.max(Instant::now()))
                        .into(),
                )
                .await;
                Ok(())
            }
            _ => Err(api_err("watch this run's pods", e)),
        }
    }
}

/// One node's pod while the run waits for it.
struct Tracked {
    node: String,
    /// Why it is not done yet, as last seen.
    last: String,
    /// Since when its image pull has been failing.
    pull_failing: Option<Instant>,
}

/// Creates the pods, watches them, and turns each node's pod into its outcome as it ends.
async fn fan_out(
    client: &Client,
    cfg_timeout: Duration,
    opts: &FleetOptions,
    run: &str,
    stop: &AtomicBool,
    progress: Progress<'_>,
    sink: &mut Sink<'_>,
) -> Result<()> {
    // --timeout counts from here: a pod not done by then is absent, and the log reads and the
    // deletion that follow are bounded on their own (the run ends within --timeout + 5 s).
    let started = Instant::now();
    let nodes = select_nodes(client, opts).await?;
    ensure_namespace(client, &opts.namespace, progress).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    sweep_stale(&pods, progress).await?;
    let template = PodTemplate {
        namespace: opts.namespace.clone(),
        run_id: run.to_string(),
        image: opts.images.first().to_string(),
        args: opts.check_args.clone(),
        deadline_secs: opts.timeout.as_secs().max(1) as i64,
    };
    // A server-side dry run shows a Pod Security, webhook or quota rejection before any node is touched.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let sample = finish_pod(
        template.pod_for(0, &nodes[0].name),
        opts.images.first(),
        opts,
        None,
    );
    if let Err(e) = pods.create(&dry, &sample).await {
        return Err(rejected(&opts.namespace, e));
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &opts.namespace);
    let owner = create_owner(&cms, run, &[("command", "fleet check".into())]).await?;
    let mut ready = Vec::new();
    for (i, n) in nodes.into_iter().enumerate() {
        match cannot_run(&n, &opts.images) {
            Some(why) => sink.add(absent(&n.name, why), None)?,
            None => ready.push((i, n)),
        }
    }
    let total = ready.len() + sink.count();
    let deadline = started + opts.timeout;
    // Pods are created concurrently, a bounded number in flight (an API server rate-limits a
    // burst), each built only when its turn comes.
    let created: Vec<_> = stream::iter(ready)
        .map(|(i, n)| {
            let pods = pods.clone();
            let image = opts.images.for_arch(&n.arch).unwrap_or_default();
            let pod = finish_pod(template.pod_for(i, &n.name), image, opts, Some(&owner));
            async move {
                // Only whether it worked is kept: 4,000 created pods as the server echoes them
                // back would be tens of MiB.
                let r = retry::until(deadline, || pods.create(&CREATE, &pod))
                    .await
                    .map(drop);
                (n.name, pod.metadata.name.unwrap_or_default(), r)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let mut waiting: HashMap<String, Tracked> = HashMap::new(); // pod name → its node
    for (node, pod_name, r) in created {
        match r {
            Ok(_) => {
                waiting.insert(
                    pod_name,
                    Tracked {
                        node,
                        last: "not started yet".into(),
                        pull_failing: None,
                    },
                );
            }
            // A retried create may find its own first try already done.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                waiting.insert(
                    pod_name,
                    Tracked {
                        node,
                        last: "not started yet".into(),
                        pull_failing: None,
                    },
                );
            }
            Err(e) => sink.add(
                NodeOutcome {
                    name: node,
                    state: NodeState::Error,
                    reason: Some(format!("{:#}", api_err("creating its pod failed", e))),
                    report: None,
                },
                None,
            )?,
        }
    }
    progress(&format!("{} pods created on {total} nodes", waiting.len()));
    let grace = pull_grace(opts.timeout);
    let mut watch = RunWatch::reducing(pods.clone(), run, deadline, cfg_timeout, Seen::of);
    let mut reads = tokio::task::JoinSet::new();
    let mut said = Instant::now();
    let mut scanned = Instant::now();
    let mut queued: Vec<(String, String, i32, compact::Termination)> = Vec::new();
    let mut changes: Vec<Seen> = watch.list().await?;
    let mut last_done = usize::MAX;
    let bundles = sink.wants_bundles();
    // Pod events in, node outcomes out; log reads of exited pods run alongside, IN_FLIGHT at most.
    loop {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted: the run's pods are being deleted");
        }
        for p in changes.drain(..) {
            let name = p.name;
            let Some(t) = waiting.get_mut(&name) else {
                continue;
            };
            let state = p.state;
            if p.pull_failing {
                let since = *t.pull_failing.get_or_insert_with(Instant::now);
                if since.elapsed() < grace {
                    if let PodState::NeverRan(why) = state {
                        t.last = why;
                    }
                    continue;
                }
            } else {
                t.pull_failing = None;
            }
            match state {
                PodState::Waiting(why) => t.last = why,
                PodState::NeverRan(why) => {
                    let t = waiting.remove(&name).expect("present");
                    sink.add(absent(&t.node, why), None)?;
                }
                PodState::Stopped(why) => {
                    let t = waiting.remove(&name).expect("present");
                    sink.add(
                        NodeOutcome {
                            name: t.node,
                            state: NodeState::Error,
                            reason: Some(why),
                            report: None,
                        },
                        None,
                    )?;
                }
                PodState::Exited(code) => {
                    let t = waiting.remove(&name).expect("present");
                    queued.push((t.node, name, code, p.termination));
                }
            }
        }
        // Pulls that kept failing past the grace, and pods still not done at the deadline (looked
        // for a few times a second, not at every event).
        let now = Instant::now();
        let scan = now.duration_since(scanned) >= Duration::from_millis(250);
        if scan {
            scanned = now;
        }
        let expired: Vec<String> = waiting
            .iter()
            .filter(|_| scan)
            .filter(|(_, t)| {
                now >= deadline || t.pull_failing.is_some_and(|s| s.elapsed() >= grace)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in expired {
            let t = waiting.remove(&name).expect("present");
            let why = if t.pull_failing.is_some() && now < deadline {
                t.last
            } else {
                format!("pod still not finished at the deadline ({})", t.last)
            };
            sink.add(absent(&t.node, why), None)?;
        }
        while reads.len() < IN_FLIGHT
            && let Some((node, name, code, term)) = queued.pop()
        {
            let pods = pods.clone();
            // A task of its own, so the read goes on while the loop waits on the watch.
            reads.spawn(async move { read_back(&pods, node, &name, code, &term, bundles).await });
        }
        let done = total - waiting.len() - reads.len() - queued.len();
        if done != last_done && (done == total || said.elapsed() >= Duration::from_secs(1)) {
            progress(&format!("{done} of {total} nodes done"));
            last_done = done;
            said = Instant::now();
        }
        if waiting.is_empty() && reads.is_empty() && queued.is_empty() {
            break;
        }
        // Wake for a pod change, a finished log read, or the clock (Ctrl-C, grace, deadline).
        let tick = Duration::from_millis(250);
        if waiting.is_empty() {
            if let Ok(Some(r)) = tokio::time::timeout(tick, reads.join_next()).await {
                let (n, b) = r.context("a log read failed")?;
                sink.add(n, b)?;
            }
        } else {
            match watch.next(tick).await? {
                Change::Pod(p) => changes.push(*p),
                Change::Relisted(all) => {
                    let names: std::collections::HashSet<String> =
                        all.iter().map(|p| p.name.clone()).collect();
                    gone(&mut waiting, sink, |n| !names.contains(n))?;
                    changes = all;
                }
                Change::Gone(name) => gone(&mut waiting, sink, |n| n == name)?,
                Change::Idle => {}
            }
        }
        while let Some(r) = reads.try_join_next() {
            let (n, b) = r.context("a log read failed")?;
            sink.add(n, b)?;
        }
    }
    Ok(())
}

/// Pods deleted from outside before they finished (`fleet cleanup` from another shell, say).
fn gone(
    waiting: &mut HashMap<String, Tracked>,
    sink: &mut Sink<'_>,
    is_gone: impl Fn(&str) -> bool,
) -> Result<()> {
    let names: Vec<String> = waiting.keys().filter(|n| is_gone(n)).cloned().collect();
    for name in names {
        let t = waiting.remove(&name).expect("present");
        sink.add(
            NodeOutcome {
                name: t.node,
                state: NodeState::Error,
                reason: Some(format!("pod {name} disappeared before it finished")),
                report: None,
            },
            None,
        )?;
    }
    Ok(())
}

fn absent(node: &str, why: String) -> NodeOutcome {
    NodeOutcome {
        name: node.to_string(),
        state: NodeState::Absent,
        reason: Some(why),
        report: None,
    }
}

/// A pod's log (its container's output): capped at [`LOG_LIMIT`], each try bounded by
/// [`LOG_TIME`], a transient failure tried once more.
async fn read_log(pods: &Api<Pod>, pod: &str) -> Result<String> {
    let lp = LogParams {
        container: Some(pod::CONTAINER.into()),
        limit_bytes: Some(LOG_LIMIT),
        ..Default::default()
    };
    let once = || async {
        match tokio::time::timeout(LOG_TIME, pods.logs(pod, &lp)).await {
            Ok(r) => r.map_err(|e| {
                let again = matches!(retry::classify(&e), retry::Next::Retry(_));
                (again, api_err("reading the pod log failed", e))
            }),
            Err(_) => Err((
                true,
                anyhow!(
                    "reading the pod log failed: no end within {}s",
                    LOG_TIME.as_secs()
                ),
            )),
        }
    };
    match once().await {
        Ok(l) => Ok(l),
        Err((true, _)) => {
            tokio::time::sleep(retry::pause(0, None)).await;
            once().await.map_err(|(_, e)| e)
        }
        Err((false, e)) => Err(e),
    }
}

/// A node whose pod exited: its report from the log (exit 0 or 1), or the error it printed; when
/// the log cannot be read, the compact report of its termination message. With `bundles`, also the
/// node's bundle framed after its report, or why there is none.
async fn read_back(
    pods: &Api<Pod>,
    node: String,
    pod: &str,
    code: i32,
    term: &compact::Termination,
    bundles: bool,
) -> (NodeOutcome, NodeBundle) {
    let log = match read_log(pods, pod).await {
        Ok(l) => l,
        Err(e) => {
            let why = format!("{e:#}");
            let bundle = bundles.then(|| Err(format!("the pod log could not be read: {why}")));
            return (compact::fallback(node, &why, term), bundle);
        }
    };
    let bundle = bundles.then(|| match crate::bundle::frame::find(&log) {
        Some(b) => b.map_err(|e| match e {
            crate::bundle::frame::FrameError::Omitted(_) => e.to_string(),
            e => format!("the node's bundle is unusable: {e}"),
        }),
        None => Err("the pod's log carries none".into()),
    });
    match (code, report_from_log(&log)) {
        (0 | 1, Some(report)) => (
            NodeOutcome {
                name: node,
                state: NodeState::Reported,
                reason: None,
                report: Some(report),
            },
            bundle,
        ),
        (_, _) => {
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let why = format!(
                "the pod exited {code} without a report{}",
                if tail.is_empty() {
                    " and printed nothing".to_string()
                } else {
                    format!(": {}", tail.join(" | "))
                }
            );
            (
                NodeOutcome {
                    name: node,
                    state: NodeState::Error,
                    reason: Some(why.clone()),
                    report: None,
                },
                bundles.then_some(Err(why)),
            )
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
        "grant the permissions in deploy/rbac.yaml (ClusterRole and Role k8sdoctor-fleet) to the user of the kubeconfig".to_string()
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
        let r = mcast::fan_out(&client, cfg.timeout, opts, mc, &run, &stop, progress).await;
        if !opts.keep {
            delete_run(&client, &opts.namespace, &run, progress).await;
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
        // One deletecollection; the server answers with what it deleted.
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = retry::until(deadline, || pods.delete_collection(&DELETE, &lp))
            .await
            .map_err(|e| api_err("delete doctor pods", e))?
            .left()
            .map_or(0, |l| l.items.len());
        // The runs' owner and participant ConfigMaps (a real cluster's garbage collector then
        // deletes whatever their pods left).
        let cms: Api<ConfigMap> = Api::namespaced(client, namespace);
        if let Err(e) = cms
            .delete_collection(&DeleteParams::background(), &lp)
            .await
        {
            crate::core::stderr::note(&format!(
                "could not delete the doctor's ConfigMaps: {}",
                api_err("delete", e)
            ));
        }
        Ok::<_, anyhow::Error>(n)
    });
    rt.shutdown_background();
    n
}
