//! Finding the cluster (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, in-cluster service account),
//! building a `kube` client bounded by `--timeout`, and naming the layer at which talking to it failed.

use std::{error::Error as StdError, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
    core::Status,
};

use crate::{
    core::config::Config,
    core::facts::{Fact, FactError},
    mask::mask_secrets,
};

/// Where the cluster checks connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    pub context: Option<String>,
    /// Where the configuration came from, for evidence (`--kubeconfig /x`, `KUBECONFIG`, ...).
    pub source: String,
    config: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Kubeconfig(Box<Kubeconfig>),
    InCluster,
}

/// Reads the kubeconfig the user named with `--kubeconfig`; an error here ends the run with exit 2.
pub fn load_named(cfg: &Config) -> anyhow::Result<Option<Kubeconfig>> {
    let Some(path) = &cfg.kubeconfig else {
        return Ok(None);
    };
    let kc = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read --kubeconfig {}", path.display()))?;
    if let Some(ctx) = &cfg.context
        && !kc.contexts.iter().any(|c| &c.name == ctx)
    {
        bail!("--context {ctx}: no such context in {}", path.display());
    }
    Ok(Some(kc))
}

/// The cluster to talk to, in kubectl's order; `Missing` when there is none (the checks skip).
pub fn find(cfg: &Config) -> Fact<Target> {
    let unreadable = |what: &str, e: &dyn std::fmt::Display| {
        FactError::Unreadable(mask_secrets(&format!("cannot read {what}: {e}")))
    };
    let (kc, source) = if let Some(path) = &cfg.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| unreadable(&format!("--kubeconfig {}", path.display()), &e))?;
        (kc, format!("--kubeconfig {}", path.display()))
    } else if let Some(kc) = Kubeconfig::from_env().map_err(|e| unreadable("KUBECONFIG", &e))? {
        (kc, "KUBECONFIG".to_string())
    } else if let Some(path) = home_config().filter(|p| p.exists()) {
        let kc = Kubeconfig::read_from(&path)
            .map_err(|e| unreadable(&path.display().to_string(), &e))?;
        (kc, path.display().to_string())
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    {
        let c = kube::Config::incluster()
            .map_err(|e| unreadable("the in-cluster service account", &e))?;
        return Ok(Target {
            server: c.cluster_url.to_string(),
            context: None,
            source: "in-cluster service account".into(),
            config: Source::InCluster,
        });
    } else {
        return Err(FactError::Missing(
            "no kubeconfig: --kubeconfig not given, KUBECONFIG unset, no ~/.kube/config, not in a pod"
                .into(),
        ));
    };
    let context = cfg.context.clone().or_else(|| kc.current_context.clone());
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| Some(&c.name) == context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone());
    let server = kc
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .and_then(|c| c.cluster.as_ref()?.server.clone())
        .ok_or_else(|| match &context {
            Some(ctx) => FactError::Unreadable(format!(
                "{source}: context {ctx:?} names no cluster with a server"
            )),
            None => FactError::Unreadable(format!("{source}: no current-context")),
        })?;
    Ok(Target {
        server,
        context,
        source,
        config: Source::Kubeconfig(Box::new(kc)),
    })
}

fn home_config() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
}

/// A client whose every connection and read is bounded by `timeout`.
pub async fn client(target: Target, timeout: Duration) -> Result<Client, ApiFailure> {
    let server = target.server.clone();
    let config_err = |e: &dyn std::fmt::Display| ApiFailure {
        layer: Layer::Config,
        message: mask_secrets(&format!("{}: {e}", target.source)),
        server: server.clone(),
    };
    let mut config = match &target.config {
        Source::Kubeconfig(kc) => {
            let opts = KubeConfigOptions {
                context: target.context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig((**kc).clone(), &opts)
                .await
                .map_err(|e| config_err(&e))?
        }
        Source::InCluster => kube::Config::incluster().map_err(|e| config_err(&e))?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| config_err(&e))
}

/// The layer at which talking to the API server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Config,
    NameResolution,
    TcpRefused,
    Timeout,
    Tls,
    Unauthorized,
    Forbidden,
    Other,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Config => "client configuration",
            Layer::NameResolution => "name resolution",
            Layer::TcpRefused => "TCP connection refused",
            Layer::Timeout => "timeout",
            Layer::Tls => "TLS",
            Layer::Unauthorized => "authentication (401)",
            Layer::Forbidden => "authorization (403)",
            Layer::Other => "request",
        }
    }
}

/// Why the API server could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub layer: Layer,
    pub message: String,
    pub server: String,
}

impl ApiFailure {
    pub fn timeout(server: &str, timeout: Duration) -> ApiFailure {
        ApiFailure {
            layer: Layer::Timeout,
            message: format!(
                "no answer from {server} within the {:.1}s --timeout",
                timeout.as_secs_f64()
            ),
            server: server.into(),
        }
    }

    /// Names the failing layer from a kube error and its whole source chain.
    pub fn classify(server: &str, e: &kube::Error, timeout: Duration) -> ApiFailure {
        let (layer, message) = classify(e, timeout);
        ApiFailure {
            layer,
            message: mask_secrets(&message),
            server: server.into(),
        }
    }
}

/// A 403 as the server words it: `User "x" cannot list resource "nodes" in API group "" ...`.
pub fn denied_text(s: &Status) -> String {
    mask_secrets(
        s.message
            .split_once("forbidden: ")
            .map_or(s.message.as_str(), |(_, r)| r),
    )
}

fn classify(e: &kube::Error, timeout: Duration) -> (Layer, String) {
    if let kube::Error::Api(s) = e {
        return match s.code {
            401 => (
                Layer::Unauthorized,
                "401 Unauthorized: the server rejected the kubeconfig's credentials (wrong or expired token, or a client certificate the cluster CA did not sign)".into(),
            ),
            403 => (Layer::Forbidden, format!("403 Forbidden: {}", denied_text(s))),
            c => (Layer::Other, format!("{c} {}: {}", s.reason, s.message)),
        };
    }
    let mut chain: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut found: Option<(Layer, String)> = None;
    while let Some(err) = cur {
        chain.push(err.to_string());
        let io = err.downcast_ref::<std::io::Error>();
        let tls = err
            .downcast_ref::<rustls::Error>()
            .or_else(|| io.and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>()));
        if let Some(t) = tls {
            found = Some((Layer::Tls, tls_text(t)));
            break;
        }
        if let Some(io) = io {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    found = Some((Layer::TcpRefused, "connection refused: nothing listens on the API server's address and port (kube-apiserver down, wrong port, or a firewall rejecting)".into()));
                }
                std::io::ErrorKind::TimedOut => {
                    found = Some((
                        Layer::Timeout,
                        format!(
                            "no answer within the {:.1}s --timeout",
                            timeout.as_secs_f64()
                        ),
                    ));
                }
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                chain.push(inner.to_string());
            }
        }
        cur = err.source();
    }
    let text = chain.join(": ");
    if let Some((layer, msg)) = found {
        return (layer, format!("{msg} ({})", dedup(&text)));
    }
    let lower = text.to_lowercase();
    for (needle, what) in [
        ("unknownissuer", C_UNKNOWN),
        ("unknown issuer", C_UNKNOWN),
        ("badsignature", C_UNKNOWN),
        ("bad signature", C_UNKNOWN),
        ("expired", C_EXPIRED),
        ("notvalidforname", C_NAME),
        ("not valid for name", C_NAME),
    ] {
        if lower.contains(needle) {
            return (Layer::Tls, format!("{what} ({})", dedup(&text)));
        }
    }
    let layer = if lower.contains("dns error") || lower.contains("failed to lookup address") {
        Layer::NameResolution
    } else if lower.contains("timed out") || lower.contains("deadline has elapsed") {
        Layer::Timeout
    } else if lower.contains("certificate") || lower.contains("tls") {
        Layer::Tls
    } else if lower.contains("connection refused") {
        Layer::TcpRefused
    } else {
        Layer::Other
    };
    (layer, dedup(&text))
}

/// Error chains repeat themselves (`a: b: b`); keep each part once.
fn dedup(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in text.split(": ") {
        if !parts.contains(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

const C_UNKNOWN: &str = "unknown CA: the server's certificate is not signed by the CA in the kubeconfig (certificate-authority-data from another cluster, or the CA was re-created)";
const C_EXPIRED: &str = "the server's certificate has expired (kubeadm certs check-expiration; kubeadm certs renew all)";
const C_NAME: &str = "wrong name: the server's certificate does not name the address in the kubeconfig (add it with --apiserver-cert-extra-sans)";

fn tls_text(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => C_UNKNOWN.into(),
            C::Expired | C::ExpiredContext { .. } => C_EXPIRED.into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => C_NAME.into(),
            other => format!("invalid server certificate: {other:?}"),
        },
        other => format!("TLS handshake failed: {other}"),
    }
}
