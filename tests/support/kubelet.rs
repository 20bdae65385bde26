//! A process kubelet for the fleet tests: the test API server's pods and namespaces (create with
//! dry run and Pod Security admission, get, list by label, delete, deletecollection, log), and every
//! pod bound to a node run as a real local process the way a kubelet and container runtime would:
//! in the node's network namespace (hostNetwork), in a private mount namespace whose root is the
//! pod's filesystem (the image = the binary under test, whatever the image name says; the node's
//! fixture root bind-mounted read-only at the pod's hostPath mount), with `fieldRef` env, and its
//! exit code and output turned into the pod's status and log.
//!
//! ```ignore
//! let kubelet = ProcessKubelet::new(bin(), vec![NodeSpec::new("n1", fixtures().join("hosts/x"))]);
//! let server = ApiServer::start(kubelet.scenario(Scenario::empty()));
//! ```
//!
//! Scripted faults per node ([`Fault`]): the pod stays Pending (a hung kubelet), the image cannot be
//! pulled, the image's entrypoint is another program; and per cluster: the namespace's Pod Security
//! level, a policy that strips wildcard tolerations (so a node's NoExecute taint is then enforced by
//! the kubelet's admission, as a real kubelet does for pods bound with `nodeName`).
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    ffi::CString,
    fs,
    io::Read,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node, Taint};
use serde_json::{Value, json};

use super::{
    Netns, Switch,
    apiserver::{ApiServer, Request, Scenario, Workloads, node, status},
};

/// The bearer token the kubelet mounts into pods that use a service account.
pub const SA_TOKEN: &str = "k8sdoctor-test-serviceaccount-token";

/// A node's scripted fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The kubelet never starts the pod (it stays Pending).
    StaysPending,
    /// Pulling the image fails (ErrImagePull).
    ImagePullFails,
    /// The image's `k8sdoctor` is this program instead (e.g. /bin/false).
    Entrypoint(PathBuf),
}

/// One emulated node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    /// The node's `/` (a fixture root).
    pub root: PathBuf,
    pub ready: bool,
    pub fault: Option<Fault>,
    /// A NoExecute taint (key, value).
    pub no_execute: Option<(String, String)>,
    /// iptables-restore input loaded into every pod network namespace on this node (what a
    /// NetworkPolicy or a CNI's rules would do there).
    pub pod_rules: Option<String>,
}

impl NodeSpec {
    pub fn new(name: &str, root: impl Into<PathBuf>) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            root: root.into(),
            ready: true,
            fault: None,
            no_execute: None,
            pod_rules: None,
        }
    }
    pub fn pod_rules(mut self, rules: &str) -> NodeSpec {
        self.pod_rules = Some(rules.into());
        self
    }
    pub fn fault(mut self, f: Fault) -> NodeSpec {
        self.fault = Some(f);
        self
    }
    pub fn not_ready(mut self) -> NodeSpec {
        self.ready = false;
        self
    }
    pub fn no_execute(mut self, key: &str, value: &str) -> NodeSpec {
        self.no_execute = Some((key.into(), value.into()));
        self
    }
}

/// A pod's log: its container's stdout and stderr, capped.
type PodLog = Arc<Mutex<Vec<u8>>>;

struct PodRec {
    json: Value,
    log: PodLog,
    child: Option<Arc<Mutex<Child>>>,
    /// The pod's own network namespace (pods not on the host network).
    netns: Option<Netns>,
}

#[derive(Default)]
struct Store {
    /// Namespaces created through the API (name → object).
    namespaces: BTreeMap<String, Value>,
    /// (namespace, name) → pod.
    pods: BTreeMap<(String, String), PodRec>,
    seq: u64,
    /// Every pod ever created (not dry runs): (namespace, name, node).
    created: Vec<(String, String, String)>,
    /// Other namespaced objects clients create (configmaps, serviceaccounts, roles, rolebindings):
    /// (plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
}

struct KNode {
    spec: NodeSpec,
    netns: Netns,
}

/// The pods side of the test API server, and the kubelet of every emulated node.
pub struct ProcessKubelet {
    binary: PathBuf,
    nodes: Vec<KNode>,
    store: Mutex<Store>,
    /// Namespaces that exist beforehand (name → labels), as in the scenario.
    preset: BTreeMap<String, BTreeMap<String, String>>,
    /// The Pod Security level of namespaces without an enforce label (the cluster default).
    psa_default: String,
    /// A mutating policy that removes `operator: Exists` tolerations without a key.
    strip_wildcard_tolerations: bool,
    /// The overlay: one L2 segment (10.244.0.0/16) that nodes and pods plug into.
    network: Option<Switch>,
    /// Where pods reach the API server (KUBERNETES_SERVICE_HOST/PORT) and its CA, once started.
    api: Mutex<Option<(std::net::SocketAddr, String)>>,
    dir: tempfile::TempDir,
}

impl ProcessKubelet {
    /// Nodes each get a network namespace of their own, removed when the kubelet is dropped.
    pub fn new(binary: PathBuf, nodes: Vec<NodeSpec>) -> ProcessKubelet {
        let nodes = nodes
            .into_iter()
            .map(|spec| KNode {
                netns: Netns::new("node"),
                spec,
            })
            .collect();
        ProcessKubelet {
            binary,
            nodes,
            store: Mutex::new(Store::default()),
            preset: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .into_iter()
                .map(|n| (n.to_string(), BTreeMap::new()))
                .collect(),
            psa_default: "privileged".into(),
            strip_wildcard_tolerations: false,
            network: None,
            api: Mutex::new(None),
            dir: tempfile::tempdir().expect("kubelet dir"),
        }
    }

    /// Puts every node (at 10.244.0.N) and every pod (10.244.M.N) on one overlay segment.
    pub fn pod_network(mut self) -> ProcessKubelet {
        let sw = Switch::new("ovl");
        for (i, n) in self.nodes.iter().enumerate() {
            sw.plug(&n.netns, &format!("{}/16", node_ip(i)));
        }
        self.network = Some(sw);
        self
    }

    /// A namespace on the overlay for the API server and the CLI (10.244.255.N).
    pub fn overlay_host(&self, n: u8) -> (Netns, String) {
        let sw = self.network.as_ref().expect("pod_network() first");
        let ns = Netns::new("cp");
        let ip = format!("10.244.255.{n}");
        sw.plug(&ns, &format!("{ip}/16"));
        (ns, ip)
    }

    /// Tells the kubelet where pods find the API server (in-cluster config) and its CA.
    pub fn set_api(&self, addr: std::net::SocketAddr, ca_pem: &str) {
        *self.api.lock().unwrap() = Some((addr, ca_pem.to_string()));
    }

    /// A namespace that exists before the run, with these labels.
    pub fn namespace(mut self, name: &str, labels: &[(&str, &str)]) -> ProcessKubelet {
        self.preset.insert(
            name.into(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    /// The cluster-wide Pod Security level for namespaces without a label (`baseline`, `restricted`).
    pub fn psa_default(mut self, level: &str) -> ProcessKubelet {
        self.psa_default = level.into();
        self
    }

    /// A policy engine that strips wildcard tolerations from every pod (they exist in real clusters).
    pub fn strip_wildcard_tolerations(mut self) -> ProcessKubelet {
        self.strip_wildcard_tolerations = true;
        self
    }

    /// The scenario with this kubelet's nodes and the kubelet answering for pods and namespaces.
    pub fn scenario(self: &Arc<Self>, mut s: Scenario) -> Scenario {
        for (i, n) in self.nodes.iter().enumerate() {
            let mut obj: Node = node(&n.spec.name, "v1.33.2", n.spec.ready, i == 0);
            if let Some((k, v)) = &n.spec.no_execute {
                obj.spec.get_or_insert_default().taints = Some(vec![Taint {
                    key: k.clone(),
                    value: Some(v.clone()),
                    effect: "NoExecute".into(),
                    ..Default::default()
                }]);
            }
            s = s.with(obj);
        }
        s.bearer(SA_TOKEN, "system:serviceaccount:k8sdoctor:k8sdoctor-probe")
            .workloads(Arc::new(Api(self.clone())))
    }

    /// Every pod still stored (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        self.store.lock().unwrap().pods.keys().cloned().collect()
    }

    /// Every pod ever created (namespace, name, node).
    pub fn created(&self) -> Vec<(String, String, String)> {
        self.store.lock().unwrap().created.clone()
    }

    /// Processes of pods still running.
    pub fn running(&self) -> usize {
        let st = self.store.lock().unwrap();
        st.pods
            .values()
            .filter_map(|p| p.child.as_ref())
            .filter(|c| c.lock().unwrap().try_wait().ok().flatten().is_none())
            .count()
    }

    fn namespace_labels(&self, st: &Store, ns: &str) -> Option<BTreeMap<String, String>> {
        if let Some(o) = st.namespaces.get(ns) {
            return Some(
                serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default(),
            );
        }
        self.preset.get(ns).cloned()
    }

    fn create_pod(
        self: &Arc<Self>,
        ns: &str,
        body: &[u8],
        dry_run: bool,
        user: &str,
    ) -> (u16, Vec<u8>) {
        let mut pod: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return (400, status(400, "BadRequest", &format!("{e}"), None)),
        };
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut st = self.store.lock().unwrap();
        let Some(labels) = self.namespace_labels(&st, ns) else {
            let msg = format!("namespaces \"{ns}\" not found");
            return (404, status(404, "NotFound", &msg, None));
        };
        if name.is_empty() {
            return (
                422,
                status(
                    422,
                    "Invalid",
                    "Pod \"\" is invalid: metadata.name: Required value",
                    None,
                ),
            );
        }
        // Pod Security admission (enforce), as the API server's built-in plugin words it.
        let level = labels
            .get("pod-security.kubernetes.io/enforce")
            .cloned()
            .unwrap_or_else(|| self.psa_default.clone());
        if level != "privileged" {
            let spec = &pod["spec"];
            let mut bad = Vec::new();
            if spec["hostNetwork"] == true || spec["hostPID"] == true {
                bad.push(format!(
                    "host namespaces (hostNetwork={}, hostPID={})",
                    spec["hostNetwork"] == true,
                    spec["hostPID"] == true
                ));
            }
            if let Some(vols) = spec["volumes"].as_array() {
                let hp: Vec<String> = vols
                    .iter()
                    .filter(|v| v.get("hostPath").is_some())
                    .map(|v| format!("\"{}\"", v["name"].as_str().unwrap_or("")))
                    .collect();
                if !hp.is_empty() {
                    bad.push(format!("hostPath volumes (volume {})", hp.join(", ")));
                }
            }
            if !bad.is_empty() {
                let msg = format!(
                    "pods \"{name}\" is forbidden: violates PodSecurity \"{level}:latest\": {}",
                    bad.join(", ")
                );
                return (403, status(403, "Forbidden", &msg, None));
            }
        }
        if st.pods.contains_key(&(ns.to_string(), name.clone())) {
            let msg = format!("pods \"{name}\" already exists");
            return (409, status(409, "AlreadyExists", &msg, None));
        }
        if self.strip_wildcard_tolerations
            && let Some(t) = pod["spec"]["tolerations"].as_array_mut()
        {
            t.retain(|t| !(t["operator"] == "Exists" && t.get("key").is_none()));
        }
        st.seq += 1;
        let uid = format!("pod-uid-{}", st.seq);
        let now = jiff::Timestamp::now().to_string();
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["uid"] = json!(uid);
        pod["metadata"]["resourceVersion"] = json!(st.seq.to_string());
        pod["metadata"]["creationTimestamp"] = json!(now);
        pod["metadata"]["managedFields"] = json!([{"manager": user, "operation": "Update"}]);
        pod["status"] = json!({"phase": "Pending", "qosClass": "Burstable"});
        if dry_run {
            return (201, serde_json::to_vec(&pod).unwrap());
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        let key = (ns.to_string(), name.clone());
        st.created.push((ns.into(), name, node.clone()));
        st.pods.insert(
            key.clone(),
            PodRec {
                json: pod.clone(),
                log: Arc::new(Mutex::new(Vec::new())),
                child: None,
                netns: None,
            },
        );
        drop(st);
        if let Some(i) = self.nodes.iter().position(|n| n.spec.name == node) {
            let me = self.clone();
            thread::spawn(move || me.kubelet(i, key));
        }
        (201, serde_json::to_vec(&pod).unwrap())
    }

    fn set_status(&self, key: &(String, String), f: impl FnOnce(&mut Value)) {
        if let Some(p) = self.store.lock().unwrap().pods.get_mut(key) {
            f(&mut p.json["status"]);
        }
    }

    /// What node `i`'s kubelet does with a pod bound to it.
    fn kubelet(self: Arc<Self>, i: usize, key: (String, String)) {
        let node = &self.nodes[i];
        if !node.spec.ready || matches!(node.spec.fault, Some(Fault::StaysPending)) {
            return;
        }
        let Some(pod) = self
            .store
            .lock()
            .unwrap()
            .pods
            .get(&key)
            .map(|p| p.json.clone())
        else {
            return;
        };
        // Admission: a pod bound with nodeName skips the scheduler; the kubelet still refuses
        // pods that do not tolerate the node's NoExecute taints.
        if let Some((k, v)) = &node.spec.no_execute {
            let tolerated = pod["spec"]["tolerations"].as_array().is_some_and(|ts| {
                ts.iter().any(|t| {
                    let effect_ok = t["effect"].is_null() || t["effect"] == "NoExecute";
                    let key_ok = t["key"].is_null() || t["key"] == k.as_str();
                    let value_ok = t["operator"] == "Exists" || t["value"] == v.as_str();
                    effect_ok && key_ok && value_ok
                })
            });
            if !tolerated {
                self.set_status(&key, |s| {
                    *s = json!({"phase": "Failed", "reason": "TaintToleration",
                        "message": format!("Predicate TaintToleration failed: node(s) had untolerated taint {{{k}: {v}}}")});
                });
                return;
            }
        }
        let container = pod["spec"]["containers"][0].clone();
        let cname = container["name"].as_str().unwrap_or("c").to_string();
        let image = container["image"].as_str().unwrap_or("").to_string();
        if matches!(node.spec.fault, Some(Fault::ImagePullFails)) {
            self.set_status(&key, |s| {
                s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
                    "image": image, "imageID": "", "started": false,
                    "state": {"waiting": {"reason": "ErrImagePull",
                        "message": format!("failed to pull and unpack image \"{image}\": not found")}}}]);
            });
            return;
        }
        let host_ip = node_ip(i);
        let pod_net = match self.pod_netns(i, &pod) {
            Ok(n) => n,
            Err(e) => {
                self.set_status(&key, |s| {
                    *s = json!({"phase": "Pending", "conditions": [{"type": "PodReadyToStartContainers",
                        "status": "False", "message": format!("network setup failed: {e}")}]});
                });
                return;
            }
        };
        let pod_ip = pod_net
            .as_ref()
            .map_or(host_ip.clone(), |(_, ip)| ip.clone());
        let netns_name = pod_net
            .as_ref()
            .map_or(node.netns.name.clone(), |(n, _)| n.name.clone());
        if let (Some((ns, _)), Some(p)) = (pod_net, self.store.lock().unwrap().pods.get_mut(&key)) {
            p.netns = Some(ns);
        }
        match self.start(i, &pod, &host_ip, &pod_ip, &netns_name) {
            Ok((child, log)) => {
                let started = jiff::Timestamp::now().to_string();
                let child = Arc::new(Mutex::new(child));
                if let Some(p) = self.store.lock().unwrap().pods.get_mut(&key) {
                    p.child = Some(child.clone());
                    p.log = log;
                    p.json["status"] = json!({"phase": "Running", "hostIP": host_ip,
                        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": started,
                        "containerStatuses": [{"name": cname, "ready": true, "restartCount": 0,
                            "image": image, "imageID": "", "started": true,
                            "state": {"running": {"startedAt": started}}}]});
                }
                let deadline = pod["spec"]["activeDeadlineSeconds"]
                    .as_u64()
                    .map(|s| Instant::now() + Duration::from_secs(s));
                loop {
                    let done = child.lock().unwrap().try_wait().ok().flatten();
                    if let Some(st) = done {
                        let code = st.code().unwrap_or(128 + 9);
                        self.set_status(&key, |s| {
                            s["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
                            s["containerStatuses"][0]["ready"] = json!(false);
                            s["containerStatuses"][0]["state"] = json!({"terminated": {
                                "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                                "startedAt": started, "finishedAt": jiff::Timestamp::now().to_string()}});
                        });
                        return;
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        let _ = child.lock().unwrap().kill();
                        let _ = child.lock().unwrap().wait();
                        self.set_status(&key, |s| {
                            s["phase"] = json!("Failed");
                            s["reason"] = json!("DeadlineExceeded");
                            s["message"] = json!(
                                "Pod was active on the node longer than the specified deadline"
                            );
                        });
                        return;
                    }
                    if !self.store.lock().unwrap().pods.contains_key(&key) {
                        return; // deleted: the delete handler killed it
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) => self.set_status(&key, |s| {
                s["containerStatuses"] = json!([{"name": cname, "ready": false, "restartCount": 0,
                    "image": image, "imageID": "", "started": false,
                    "state": {"waiting": {"reason": "CreateContainerError", "message": e}}}]);
            }),
        }
    }

    /// Starts the pod's container: the binary under test as the image's `k8sdoctor`, in the node's
    /// network namespace and a mount namespace of its own rooted at the pod's filesystem.
    fn start(
        &self,
        i: usize,
        pod: &Value,
        host_ip: &str,
        pod_ip: &str,
        netns_name: &str,
    ) -> Result<(Child, PodLog), String> {
        let node = &self.nodes[i];
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("pod");
        let rootfs = self.dir.path().join(uid).join("rootfs");
        for d in ["usr", "proc", "dev", "tmp", "image"] {
            fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
        }
        for (link, to) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
        ] {
            std::os::unix::fs::symlink(to, rootfs.join(link)).map_err(|e| e.to_string())?;
        }
        let entry = match &node.spec.fault {
            Some(Fault::Entrypoint(p)) => p.clone(),
            _ => self.binary.clone(),
        };
        fs::write(rootfs.join("image/k8sdoctor"), b"").map_err(|e| e.to_string())?;
        // Volumes: hostPath volumes of the pod are the node's fixture root (the node's `/`).
        let mut mounts: Vec<(PathBuf, PathBuf, bool)> = vec![
            ("/usr".into(), rootfs.join("usr"), true),
            (entry, rootfs.join("image/k8sdoctor"), true),
        ];
        // The service account's token, CA and namespace, as the kubelet projects them.
        let mut env_extra: Vec<(String, String)> = Vec::new();
        let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
        if spec["automountServiceAccountToken"] != false && sa != "default" {
            let dir = rootfs.join("var/run/secrets/kubernetes.io/serviceaccount");
            fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let api = self.api.lock().unwrap().clone();
            let Some((addr, ca)) = api else {
                return Err("the kubelet does not know the API server".into());
            };
            fs::write(dir.join("token"), SA_TOKEN).map_err(|e| e.to_string())?;
            fs::write(dir.join("ca.crt"), ca).map_err(|e| e.to_string())?;
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
            fs::write(dir.join("namespace"), ns).map_err(|e| e.to_string())?;
            env_extra.push(("KUBERNETES_SERVICE_HOST".into(), addr.ip().to_string()));
            env_extra.push(("KUBERNETES_SERVICE_PORT".into(), addr.port().to_string()));
        }
        let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
        for vm in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
            let vol = volumes.iter().find(|v| v["name"] == vm["name"]);
            let Some(hp) = vol.and_then(|v| v["hostPath"]["path"].as_str()) else {
                return Err(format!("volume {} is not a hostPath", vm["name"]));
            };
            let src = node.spec.root.join(hp.trim_start_matches('/'));
            let dst = rootfs.join(
                vm["mountPath"]
                    .as_str()
                    .unwrap_or("/mnt")
                    .trim_start_matches('/'),
            );
            fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
            mounts.push((src, dst, vm["readOnly"] == true));
        }
        let cs = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let mounts: Vec<(CString, CString, bool)> = mounts
            .iter()
            .map(|(s, d, ro)| (cs(s), cs(d), *ro))
            .collect();
        let (proc_dst, dev_dst, root_c) = (
            cs(&rootfs.join("proc")),
            cs(&rootfs.join("dev")),
            cs(&rootfs),
        );
        let netns =
            fs::File::open(format!("/run/netns/{netns_name}")).map_err(|e| e.to_string())?;
        // Env first: `$(VAR)` in command and args expands from it, as the kubelet does.
        let mut env: Vec<(String, String)> = env_extra;
        for e in c["env"].as_array().cloned().unwrap_or_default() {
            let name = e["name"].as_str().unwrap_or("").to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => node.spec.name.clone(),
                Some("status.podIP") => pod_ip.to_string(),
                Some("status.hostIP") => host_ip.to_string(),
                Some("metadata.name") => pod["metadata"]["name"].as_str().unwrap_or("").into(),
                Some("metadata.namespace") => {
                    pod["metadata"]["namespace"].as_str().unwrap_or("").into()
                }
                Some(_) => continue,
                None => e["value"].as_str().unwrap_or("").to_string(),
            };
            env.push((name, value));
        }
        let expand = |a: &str| {
            let mut out = a.to_string();
            for (k, v) in &env {
                out = out.replace(&format!("$({k})"), v);
            }
            out
        };
        let cmd: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(c["args"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str().map(expand))
            .collect();
        let program = match cmd.first().map(String::as_str) {
            Some("k8sdoctor") | None => "/image/k8sdoctor".to_string(),
            Some(p) => p.to_string(),
        };
        let mut command = Command::new(&program);
        command
            .args(cmd.iter().skip(1))
            .env_clear()
            .env(
                "PATH",
                "/image:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/")
            .envs(env);
        let fd = netns.as_raw_fd();
        // SAFETY: between fork and exec the child only makes syscalls (setns, unshare, mount,
        // chroot, chdir) on data prepared before the fork; nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                let check = |r: libc::c_int| {
                    if r == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                let null = std::ptr::null::<libc::c_char>();
                check(libc::setns(fd, libc::CLONE_NEWNET))?;
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    null,
                    c"/".as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                for (src, dst, ro) in &mounts {
                    check(libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        null,
                        libc::MS_BIND | libc::MS_REC,
                        std::ptr::null(),
                    ))?;
                    if *ro {
                        check(libc::mount(
                            null,
                            dst.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ))?;
                    }
                }
                check(libc::mount(
                    c"proc".as_ptr(),
                    proc_dst.as_ptr(),
                    c"proc".as_ptr(),
                    0,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    c"/dev".as_ptr(),
                    dev_dst.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                check(libc::chroot(root_c.as_ptr()))?;
                check(libc::chdir(c"/".as_ptr()))?;
                Ok(())
            });
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("failed to start container \"{}\": {e}", c["name"]))?;
        drop(netns);
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            thread::spawn(move || {
                let mut out = out;
                let mut buf = [0u8; 8192];
                while let Ok(n) = out.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut l = log.lock().unwrap();
                    if l.len() < 16 << 20 {
                        l.extend_from_slice(&buf[..n]);
                    }
                }
            });
        }
        Ok((child, log))
    }

    /// The pod's own network namespace on the overlay (None for hostNetwork pods), with its
    /// node's pod rules loaded.
    fn pod_netns(&self, i: usize, pod: &Value) -> Result<Option<(Netns, String)>, String> {
        if pod["spec"]["hostNetwork"] == true {
            return Ok(None);
        }
        let Some(sw) = &self.network else {
            return Err("no pod network (ProcessKubelet::pod_network)".into());
        };
        let n = {
            let mut st = self.store.lock().unwrap();
            st.seq += 1;
            st.seq
        };
        let ns = Netns::new("pod");
        let ip = format!("10.244.{}.{}", i + 1, n % 250 + 2);
        sw.plug(&ns, &format!("{ip}/16"));
        if let Some(rules) = &self.nodes[i].spec.pod_rules {
            super::feed(&ns, &["iptables-restore"], rules);
        }
        Ok(Some((ns, ip)))
    }

    fn pod_list(&self, ns: &str, q: &BTreeMap<String, String>) -> Vec<(String, String)> {
        let st = self.store.lock().unwrap();
        let sel: Vec<(String, String)> = q
            .get("labelSelector")
            .map(|s| {
                s.split(',')
                    .filter_map(|t| t.split_once('='))
                    .map(|(k, v)| {
                        (
                            k.trim().to_string(),
                            v.trim_start_matches('=').trim().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        st.pods
            .iter()
            .filter(|((pns, _), _)| pns == ns)
            .filter(|(_, p)| {
                sel.iter()
                    .all(|(k, v)| p.json["metadata"]["labels"][k.as_str()] == v.as_str())
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn delete(&self, key: &(String, String)) -> Option<Value> {
        let rec = self.store.lock().unwrap().pods.remove(key)?;
        if let Some(c) = &rec.child {
            let mut c = c.lock().unwrap();
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut v = rec.json;
        v["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
        Some(v)
    }
}

/// Namespaced resources the kubelet's API side simply stores (create, get, delete).
const GENERIC: &[&str] = &["configmaps", "serviceaccounts", "roles", "rolebindings"];

/// The API side of the kubelet (pod creation needs the `Arc` to start the pod's kubelet thread).
struct Api(Arc<ProcessKubelet>);

fn json_ok(code: u16, v: &Value) -> Option<(u16, Vec<u8>)> {
    Some((code, serde_json::to_vec(v).unwrap()))
}

impl Workloads for Api {
    fn handle(&self, req: &Request) -> Option<(u16, Vec<u8>)> {
        let k = &self.0;
        let segs: Vec<&str> = req
            .path
            .strip_prefix("/api/v1/")
            .or_else(|| req.path.strip_prefix("/apis/rbac.authorization.k8s.io/v1/"))?
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let dry_run = req.query.get("dryRun").is_some_and(|d| d == "All");
        match (req.method, segs.as_slice()) {
            ("POST", ["namespaces"]) => {
                let mut ns: Value = serde_json::from_slice(req.body).ok()?;
                let name = ns["metadata"]["name"].as_str()?.to_string();
                let mut st = k.store.lock().unwrap();
                if st.namespaces.contains_key(&name) || k.preset.contains_key(&name) {
                    let msg = format!("namespaces \"{name}\" already exists");
                    return Some((409, status(409, "AlreadyExists", &msg, None)));
                }
                ns["apiVersion"] = json!("v1");
                ns["kind"] = json!("Namespace");
                ns["metadata"]["uid"] = json!(format!("ns-uid-{name}"));
                ns["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
                ns["status"] = json!({"phase": "Active"});
                if !dry_run {
                    st.namespaces.insert(name, ns.clone());
                }
                json_ok(201, &ns)
            }
            ("GET", ["namespaces", name]) => {
                let st = k.store.lock().unwrap();
                if let Some(ns) = st.namespaces.get(*name) {
                    return json_ok(200, ns);
                }
                let labels = k.preset.get(*name)?;
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
                        "uid": format!("ns-uid-{name}"), "labels": labels}, "status": {"phase": "Active"}}),
                )
            }
            ("POST", ["namespaces", ns, "pods"]) => {
                Some(k.create_pod(ns, req.body, dry_run, req.user))
            }
            ("GET", ["namespaces", ns, "pods"]) if k.owns(ns) => {
                let items: Vec<Value> = k
                    .pod_list(ns, req.query)
                    .iter()
                    .filter_map(|key| {
                        k.store
                            .lock()
                            .unwrap()
                            .pods
                            .get(key)
                            .map(|p| p.json.clone())
                    })
                    .collect();
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "PodList",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("DELETE", ["namespaces", ns, "pods"]) => {
                let items: Vec<Value> = k
                    .pod_list(ns, req.query)
                    .iter()
                    .filter_map(|key| k.delete(key))
                    .collect();
                json_ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "PodList",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("GET", ["namespaces", ns, "pods", name]) if k.owns(ns) => {
                let st = k.store.lock().unwrap();
                match st.pods.get(&(ns.to_string(), name.to_string())) {
                    Some(p) => json_ok(200, &p.json),
                    None => Some(not_found(name)),
                }
            }
            ("DELETE", ["namespaces", ns, "pods", name]) => {
                match k.delete(&(ns.to_string(), name.to_string())) {
                    Some(v) => json_ok(200, &v),
                    None => Some(not_found(name)),
                }
            }
            ("POST", ["namespaces", ns, plural]) if GENERIC.contains(plural) => {
                let mut o: Value = serde_json::from_slice(req.body).ok()?;
                let name = o["metadata"]["name"].as_str()?.to_string();
                let key = (plural.to_string(), ns.to_string(), name.clone());
                let mut st = k.store.lock().unwrap();
                if st.objects.contains_key(&key) {
                    let msg = format!("{plural} \"{name}\" already exists");
                    return Some((409, status(409, "AlreadyExists", &msg, None)));
                }
                o["metadata"]["namespace"] = json!(ns);
                o["metadata"]["uid"] = json!(format!("{plural}-uid-{name}"));
                o["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
                if !dry_run {
                    st.objects.insert(key, o.clone());
                }
                json_ok(201, &o)
            }
            ("GET", ["namespaces", ns, plural, name]) if GENERIC.contains(plural) && k.owns(ns) => {
                let st = k.store.lock().unwrap();
                match st
                    .objects
                    .get(&(plural.to_string(), ns.to_string(), name.to_string()))
                {
                    Some(o) => json_ok(200, o),
                    None => {
                        let msg = format!("{plural} \"{name}\" not found");
                        Some((
                            404,
                            status(
                                404,
                                "NotFound",
                                &msg,
                                Some(json!({"name": name, "kind": plural})),
                            ),
                        ))
                    }
                }
            }
            ("DELETE", ["namespaces", ns, plural, name]) if GENERIC.contains(plural) => {
                let mut st = k.store.lock().unwrap();
                match st
                    .objects
                    .remove(&(plural.to_string(), ns.to_string(), name.to_string()))
                {
                    Some(o) => json_ok(200, &o),
                    None => Some(not_found(name)),
                }
            }
            ("GET", ["namespaces", ns, "pods", name, "log"]) if k.owns(ns) => {
                let st = k.store.lock().unwrap();
                let Some(p) = st.pods.get(&(ns.to_string(), name.to_string())) else {
                    return Some(not_found(name));
                };
                if p.child.is_none() {
                    let msg = format!(
                        "container \"doctor\" in pod \"{name}\" is waiting to start: ContainerCreating"
                    );
                    return Some((400, status(400, "BadRequest", &msg, None)));
                }
                let mut log = p.log.lock().unwrap().clone();
                if let Some(limit) = req.query.get("limitBytes").and_then(|l| l.parse().ok()) {
                    log.truncate(limit);
                }
                Some((200, log))
            }
            _ => None,
        }
    }
}

/// Node `i`'s address on the overlay (and its hostIP).
fn node_ip(i: usize) -> String {
    format!("10.244.0.{}", i + 1)
}

fn not_found(name: &str) -> (u16, Vec<u8>) {
    let msg = format!("pods \"{name}\" not found");
    (
        404,
        status(
            404,
            "NotFound",
            &msg,
            Some(json!({"name": name, "kind": "pods"})),
        ),
    )
}

impl ProcessKubelet {
    /// Pods of this namespace are this kubelet's (the doctor's namespace); others stay the scenario's.
    fn owns(&self, ns: &str) -> bool {
        let st = self.store.lock().unwrap();
        st.namespaces.contains_key(ns)
            || (self.preset.contains_key(ns) && !["kube-system", "kube-public"].contains(&ns))
            || st.pods.keys().any(|(n, _)| n == ns)
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        let keys: Vec<_> = self.store.lock().unwrap().pods.keys().cloned().collect();
        for k in keys {
            self.delete(&k);
        }
    }
}

/// iptables-restore input for a pod namespace that drops UDP to `port` (a multicast group's).
pub fn drop_udp_port(port: u16) -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport {port} -j DROP\nCOMMIT\n"
    )
}

/// A cluster on the pod network: the API server (an empty scenario plus these nodes) and the CLI
/// sit on the overlay too, in the namespace returned, so pods reach the API as in a cluster.
pub fn overlay_cluster(k: ProcessKubelet) -> (Arc<ProcessKubelet>, Netns, ApiServer) {
    let k = Arc::new(k);
    let (cp, ip) = k.overlay_host(1);
    let server = ApiServer::start_in_at(
        k.scenario(Scenario::empty()),
        &cp,
        format!("{ip}:6443").parse().unwrap(),
    );
    k.set_api(server.addr(), &server.ca.pem);
    (k, cp, server)
}
