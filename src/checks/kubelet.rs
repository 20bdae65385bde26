//! The kubelet's configuration file (`/var/lib/kubelet/config.yaml`): the few fields our checks read,
//! as one source that the DNS and swap sources share (read and parsed once per run).

use serde::Deserialize;

use crate::core::{
    facts::{Fact, FactError},
    source::{Gather, Source},
};

/// Where kubeadm writes the kubelet's configuration.
pub const CONFIG_PATH: &str = "/var/lib/kubelet/config.yaml";

/// The kubelet config file: `None` when it does not exist (before `kubeadm init`/`join`);
/// reading it failing is the source's error.
pub const CONFIG: Source<Option<KubeletFile>> = Source::files("kubelet-config", gather);

/// The kubelet config file as read, and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletFile {
    pub text: String,
    /// The parsed document; `Unreadable` naming the file when it is not a KubeletConfiguration.
    pub config: Fact<KubeletConfig>,
}

fn gather(g: &Gather) -> Fact<Option<KubeletFile>> {
    Ok(g.host.read_opt(CONFIG_PATH)?.map(|text| KubeletFile {
        config: parse(&text).map_err(|e| FactError::Unreadable(format!("{CONFIG_PATH}: {e}"))),
        text,
    }))
}

/// The KubeletConfiguration fields our checks read; unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfig {
    /// `resolvConf`: the file pods inherit DNS from; `Some("")` turns inheritance off.
    pub resolv_conf: Option<String>,
    pub fail_swap_on: Option<bool>,
    pub memory_swap: Option<MemorySwap>,
    /// `containerRuntimeEndpoint` (1.27+; before, the `--container-runtime-endpoint` flag).
    pub container_runtime_endpoint: Option<String>,
    /// `cgroupDriver`; the kubelet's own default when absent is cgroupfs.
    pub cgroup_driver: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemorySwap {
    pub swap_behavior: Option<String>,
}

/// Parses a KubeletConfiguration document.
pub fn parse(text: &str) -> Result<KubeletConfig, String> {
    if text.trim().is_empty() {
        return Ok(KubeletConfig::default());
    }
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

/// Where kubeadm writes the kubelet's command-line flags (`KUBELET_KUBEADM_ARGS="--flag=value ..."`).
pub const FLAGS_ENV: &str = "/var/lib/kubelet/kubeadm-flags.env";

/// The value of `--name=value` (or `--name value`) in kubeadm-flags.env text.
pub fn flag(env_text: &str, name: &str) -> Option<String> {
    let want = format!("--{name}");
    env_text.lines().find_map(|l| {
        let (_, v) = l.split_once('=')?;
        let mut words = v.trim().trim_matches('"').split_whitespace();
        while let Some(w) = words.next() {
            if let Some(val) = w.strip_prefix(&want) {
                if let Some(val) = val.strip_prefix('=') {
                    return Some(val.to_string());
                }
                if val.is_empty() {
                    return words.next().map(String::from);
                }
            }
        }
        None
    })
}

/// The 1-based line where a top-level key is set, for evidence.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_kubeadm_writes() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: false\nresolvConf: /run/systemd/resolve/resolv.conf\nfailSwapOn: false\nmemorySwap:\n  swapBehavior: LimitedSwap\ncgroupDriver: systemd\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";
        let c = parse(text).unwrap();
        assert_eq!(
            c.resolv_conf.as_deref(),
            Some("/run/systemd/resolve/resolv.conf")
        );
        assert_eq!(c.fail_swap_on, Some(false));
        assert_eq!(
            c.memory_swap.unwrap().swap_behavior.as_deref(),
            Some("LimitedSwap")
        );
        assert_eq!(line_of(text, "resolvConf"), Some(6));
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(
            c.container_runtime_endpoint.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(line_of(text, "nope"), None);
    }

    #[test]
    fn reads_flags_from_kubeadm_flags_env() {
        let env = "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image registry.k8s.io/pause:3.9\"\n";
        assert_eq!(
            flag(env, "container-runtime-endpoint").as_deref(),
            Some("unix:///var/run/containerd/containerd.sock")
        );
        assert_eq!(
            flag(env, "pod-infra-container-image").as_deref(),
            Some("registry.k8s.io/pause:3.9")
        );
        assert_eq!(flag(env, "container-runtime"), None);
        assert_eq!(flag("garbage", "x"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse("resolvConf: [unterminated").is_err());
        assert_eq!(parse("").unwrap(), KubeletConfig::default());
    }
}
