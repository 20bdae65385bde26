//! The doctor's per-node Pod (what `fleet check` asks the API server to run) and the reading of a
//! Pod's status back into a node outcome: still running, done, or absent with the reason.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector,
        Pod, PodSpec, ResourceRequirements, SecurityContext, Toleration, Volume, VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};

/// Label every pod the doctor creates carries (`fleet cleanup` and the stale sweep select on it).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "k8sdoctor");
/// Label naming the run a pod belongs to.
pub const RUN_LABEL: &str = "k8sdoctor.io/run";
/// The container's name in every doctor pod.
pub const CONTAINER: &str = "doctor";
/// Where the node's `/` is mounted inside the pod.
pub const HOST_MOUNT: &str = "/host";
/// The container's termination message file (the kubelet's default path).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What every pod of one run shares.
#[derive(Debug, Clone)]
pub struct PodTemplate {
    pub namespace: String,
    pub run_id: String,
    pub image: String,
    /// The doctor's arguments inside the pod (after the program name).
    pub args: Vec<String>,
    /// `activeDeadlineSeconds`: the kubelet kills the pod after this even if the CLI is gone.
    pub deadline_secs: i64,
}

/// `managed-by=k8sdoctor,k8sdoctor.io/run=<id>`: the selector of one run's pods.
pub fn run_selector(run_id: &str) -> String {
    format!("{}={},{RUN_LABEL}={run_id}", MANAGED_BY.0, MANAGED_BY.1)
}

/// `managed-by=k8sdoctor`: the selector of every doctor pod.
pub fn managed_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

impl PodTemplate {
    /// The pod for node number `index` named `node`: pinned with `nodeName` (no scheduler, a
    /// definite outcome per node), tolerating every taint, in the node's network and PID
    /// namespaces (its sysctls and /proc/net are per network namespace), the node's `/` read-only
    /// at /host.
    pub fn pod_for(&self, index: usize, node: &str) -> Pod {
        let labels = BTreeMap::from([
            (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
            ("app.kubernetes.io/name".into(), "k8sdoctor".into()),
            (RUN_LABEL.into(), self.run_id.clone()),
        ]);
        let annotations = BTreeMap::from([("k8sdoctor.io/node".to_string(), node.to_string())]);
        let mut command = vec!["k8sdoctor".to_string()];
        command.extend(self.args.iter().cloned());
        let field_env = |name: &str, path: &str| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let small = |cpu: &str, mem: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.into())),
                ("memory".to_string(), Quantity(mem.into())),
            ])
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("k8sdoctor-{}-{index}", self.run_id)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.to_string()),
                restart_policy: Some("Never".into()),
                tolerations: Some(vec![Toleration {
                    operator: Some("Exists".into()),
                    ..Default::default()
                }]),
                host_network: Some(true),
                host_pid: Some(true),
                dns_policy: Some("ClusterFirstWithHostNet".into()),
                active_deadline_seconds: Some(self.deadline_secs),
                automount_service_account_token: Some(false),
                termination_grace_period_seconds: Some(1),
                containers: vec![Container {
                    name: CONTAINER.into(),
                    image: Some(self.image.clone()),
                    image_pull_policy: Some("IfNotPresent".into()),
                    command: Some(command),
                    env: Some(vec![field_env("K8SDOCTOR_NODE_NAME", "spec.nodeName")]),
                    security_context: Some(security_context()),
                    // The check writes its compact report here (`check --termination-log`); the
                    // kubelet hands it to the API server in the pod status, which needs no
                    // connection to the kubelet (log reads do: tcp/10250). A process that dies
                    // before writing it leaves the tail of its log there instead.
                    termination_message_path: Some(TERMINATION_LOG.into()),
                    termination_message_policy: Some("FallbackToLogsOnError".into()),
                    resources: Some(ResourceRequirements {
                        requests: Some(small("10m", "32Mi")),
                        limits: Some(small("500m", "256Mi")),
                        ..Default::default()
                    }),
                    // Read-only all the way down: the node's `/` carries mounts of its own
                    // (/proc, /sys, /run, /var/lib/kubelet/pods/...) that a plain read-only bind
                    // leaves writable; `IfPossible` still runs where the kernel (< 5.12) or the
                    // runtime cannot make them read-only (the pod's status then says Disabled).
                    volume_mounts: Some(vec![VolumeMount {
                        name: "host".into(),
                        mount_path: HOST_MOUNT.into(),
                        read_only: Some(true),
                        recursive_read_only: Some("IfPossible".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "host".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/".into(),
                        type_: Some("Directory".into()),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// The container's security context, the same for check pods and probe pods: every capability
/// dropped but one, a read-only root, no privilege escalation.
///
/// * `NET_ADMIN`: reading the live netfilter ruleset (`iptables-save`, `nft list ruleset`, and the
///   netlink dumps behind them) needs it in the pod's network namespace — the node's for check
///   pods, the pod's own for probe pods. containerd's default set lacks it.
///
/// Nothing else: the checks read the node's files through /host as uid 0, which owns them (no
/// `DAC_READ_SEARCH`); `/proc/<pid>/cmdline` of host processes needs no `SYS_PTRACE`; the probe's
/// UDP multicast sockets need no `NET_RAW`; nothing is written, chowned or bound below 1024.
pub fn security_context() -> SecurityContext {
    SecurityContext {
        capabilities: Some(Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(vec!["ALL".into()]),
        }),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        ..Default::default()
    }
}

impl PodTemplate {
    /// A multicast probe pod for a node: on the pod network unless `host_network`, with the
    /// service account that may read the participants ConfigMap, its own IP in `POD_IP`.
    pub fn probe_pod_for(
        &self,
        index: usize,
        node: &str,
        host_network: bool,
        account: &str,
    ) -> Pod {
        let mut pod = self.pod_for(index, node);
        let spec = pod.spec.as_mut().expect("pod_for sets a spec");
        spec.host_network = Some(host_network);
        spec.host_pid = None;
        spec.dns_policy = None;
        spec.volumes = None;
        spec.service_account_name = Some(account.into());
        spec.automount_service_account_token = Some(true);
        let c = &mut spec.containers[0];
        c.volume_mounts = None;
        c.env = Some(vec![EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        pod
    }
}

/// The doctor container's termination message and the pod's node address.
pub fn termination(pod: &Pod) -> super::compact::Termination {
    let status = pod.status.as_ref();
    let message = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone());
    super::compact::Termination {
        message,
        host_ip: status.and_then(|s| s.host_ip.clone()),
    }
}

/// Where a node's pod stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodState {
    /// Not finished yet (Pending without a final reason, or Running).
    Waiting(String),
    /// The container ran and ended with this exit code.
    Exited(i32),
    /// It will never run here: the reason, in the words an operator acts on.
    NeverRan(String),
    /// It ran but was stopped from outside (deadline, eviction): the reason.
    Stopped(String),
}

/// Reads a pod's status. Image-pull failures and kubelet admission rejections are final at once:
/// waiting for the deadline would only delay the same answer.
pub fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Waiting("no status yet".into());
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    let state = container.and_then(|c| c.state.as_ref());
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        // The runtime could not start the process at all (an entrypoint the image cannot run, a
        // mount or capability it refuses): nothing ran, and the runtime's message says why.
        if t.reason.as_deref() == Some("StartError") {
            return PodState::NeverRan(format!(
                "the container could not start (StartError): {}",
                t.message.as_deref().unwrap_or("no message")
            ));
        }
        return PodState::Exited(t.exit_code);
    }
    let reason = status.reason.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    match phase {
        "Failed" if reason == "DeadlineExceeded" => PodState::Stopped(format!(
            "killed by the kubelet at activeDeadlineSeconds ({message})"
        )),
        "Failed" if reason == "Evicted" => PodState::Stopped(format!("evicted: {message}")),
        "Failed" if reason == "TaintToleration" || message.contains("TaintToleration") => {
            PodState::NeverRan(format!(
                "untolerated NoExecute taint: the kubelet rejected the pod ({message})"
            ))
        }
        "Failed" | "Succeeded" => PodState::NeverRan(format!(
            "the kubelet rejected the pod: {}",
            join_nonempty(&reason, &message)
        )),
        _ => {
            if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
                let why = w.reason.clone().unwrap_or_default();
                let msg = w.message.clone().unwrap_or_default();
                if matches!(
                    why.as_str(),
                    "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull"
                ) {
                    return PodState::NeverRan(format!(
                        "image pull failed ({}): give --image a reference this node can pull",
                        join_nonempty(&why, &msg)
                    ));
                }
                return PodState::Waiting(join_nonempty(&why, &msg));
            }
            PodState::Waiting(format!("{phase} {}", join_nonempty(&reason, &message)))
        }
    }
}

fn join_nonempty(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (false, false) => format!("{a}: {b}"),
        (false, true) => a.to_string(),
        (true, false) => b.to_string(),
        (true, true) => "no reason given".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> PodTemplate {
        PodTemplate {
            namespace: "k8sdoctor".into(),
            run_id: "r1".into(),
            image: "registry.example/k8sdoctor:0.1.0".into(),
            args: vec!["check".into(), "--root".into(), "/host".into()],
            deadline_secs: 120,
        }
    }

    #[test]
    fn the_pod_is_pinned_tolerant_host_namespaced_and_mounts_root_read_only() {
        let pod = template().pod_for(3, "node-a");
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "k8sdoctor-r1-3");
        assert_eq!(v["metadata"]["labels"][RUN_LABEL], "r1");
        assert_eq!(v["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        let spec = &v["spec"];
        assert_eq!(spec["nodeName"], "node-a");
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
        assert_eq!(
            (&spec["hostNetwork"], &spec["hostPID"]),
            (&json!(true), &json!(true))
        );
        assert_eq!(spec["activeDeadlineSeconds"], 120);
        assert_eq!(spec["volumes"][0]["hostPath"]["path"], "/");
        let c = &spec["containers"][0];
        assert_eq!(c["volumeMounts"][0]["mountPath"], HOST_MOUNT);
        assert_eq!(c["volumeMounts"][0]["readOnly"], true);
        assert_eq!(c["volumeMounts"][0]["recursiveReadOnly"], "IfPossible");
        assert_eq!(c["terminationMessagePath"], TERMINATION_LOG);
        assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
        let sc = &c["securityContext"];
        assert_eq!(
            sc["capabilities"],
            json!({"add": ["NET_ADMIN"], "drop": ["ALL"]})
        );
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert!(sc.get("privileged").is_none());
        let probe =
            serde_json::to_value(template().probe_pod_for(1, "node-a", false, "sa")).unwrap();
        assert_eq!(probe["spec"]["containers"][0]["securityContext"], *sc);
        assert_eq!(
            c["command"],
            json!(["k8sdoctor", "check", "--root", "/host"])
        );
    }

    fn with_status(status: serde_json::Value) -> Pod {
        let mut v = serde_json::to_value(template().pod_for(0, "n")).unwrap();
        v["status"] = status;
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn statuses_read_as_an_operator_would() {
        let exited = with_status(
            json!({"phase": "Failed", "containerStatuses": [{"name": "doctor",
            "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        );
        assert_eq!(pod_state(&exited), PodState::Exited(1));
        let pull = with_status(
            json!({"phase": "Pending", "containerStatuses": [{"name": "doctor",
            "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}),
        );
        assert!(
            matches!(pod_state(&pull), PodState::NeverRan(m) if m.contains("image pull failed (ErrImagePull: not found)"))
        );
        let taint = with_status(json!({"phase": "Failed", "reason": "TaintToleration",
            "message": "Predicate TaintToleration failed: node(s) had untolerated taint {maint: NoExecute}"}));
        assert!(
            matches!(pod_state(&taint), PodState::NeverRan(m) if m.starts_with("untolerated NoExecute taint"))
        );
        let deadline = with_status(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert!(matches!(pod_state(&deadline), PodState::Stopped(_)));
        let start = with_status(
            json!({"phase": "Failed", "containerStatuses": [{"name": "doctor",
            "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": 128, "reason": "StartError",
                "message": "exec: \"/usr/local/bin/k8sdoctor\": no such file or directory"}}}]}),
        );
        assert!(
            matches!(pod_state(&start), PodState::NeverRan(m) if m.contains("could not start (StartError): exec:"))
        );
        let pending = with_status(json!({"phase": "Pending"}));
        assert!(matches!(pod_state(&pending), PodState::Waiting(_)));
    }
}
