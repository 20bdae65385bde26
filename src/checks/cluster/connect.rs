//! Finding the cluster (`--kubeconfig`, `KUBECONFIG`, `~/.kube/config`, in-cluster service account),
//! building a `kube` client bounded by `--timeout`, and naming the layer at which talking to it failed.

use std::{
    error::Error as StdError,
    io::Read,
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::bail;
use http_body_util::{LengthLimitError, Limited};
use kube::{
    Client,
    client::{AuthError, ClientBuilder, DynBody},
    config::{KubeConfigOptions, Kubeconfig, KubeconfigError},
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

/// Reads the kubeconfig the user named (`--kubeconfig`, else the files in `KUBECONFIG`); an error
/// here ends the run with exit 2.
pub fn load_named(cfg: &Config) -> anyhow::Result<Option<Kubeconfig>> {
    let (kc, source) = match &cfg.kubeconfig {
        Some(path) => (
            read_kubeconfig(path).map_err(|e| anyhow::anyhow!("cannot read --kubeconfig {e}"))?,
            format!("{}", path.display()),
        ),
        None => match from_env().map_err(|e| anyhow::anyhow!("cannot read KUBECONFIG {e}"))? {
            Some(kc) => (kc, "KUBECONFIG".to_string()),
            None => return Ok(None),
        },
    };
    if let Some(ctx) = &cfg.context
        && !kc.contexts.iter().any(|c| &c.name == ctx)
    {
        bail!("--context {ctx}: no such context in {source}");
    }
    Ok(Some(kc))
}

/// The cluster to talk to, in kubectl's order; `Missing` when there is none (the checks skip).
pub fn find(cfg: &Config) -> Fact<Target> {
    let unreadable = |what: &str, e: &dyn std::fmt::Display| {
        FactError::Unreadable(mask_secrets(&format!("cannot read {what}{e}")))
    };
    let (kc, source) = if let Some(path) = &cfg.kubeconfig {
        let kc = read_kubeconfig(path).map_err(|e| unreadable("--kubeconfig ", &e))?;
        (kc, format!("--kubeconfig {}", path.display()))
    } else if let Some(kc) = from_env().map_err(|e| unreadable("KUBECONFIG ", &e))? {
        (kc, "KUBECONFIG".to_string())
    } else if let Some(path) = home_config().filter(|p| p.exists()) {
        let kc = read_kubeconfig(&path).map_err(|e| unreadable("", &e))?;
        (kc, path.display().to_string())
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    {
        let c = kube::Config::incluster()
            .map_err(|e| unreadable("the in-cluster service account", &e))?;
        return Ok(Target {
            server: mask_secrets(&c.cluster_url.to_string()),
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
        server: mask_secrets(&server),
        context,
        source,
        config: Source::Kubeconfig(Box::new(kc)),
    })
}

fn home_config() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
}

/// The largest kubeconfig read: real ones are a few KiB, tens with inline certificates.
pub const KUBECONFIG_MAX: u64 = 4 << 20;

/// Why a kubeconfig could not be used. Shown as `PATH: reason`; never quotes the file's content,
/// which holds credentials.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct KubeconfigReadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Reads a kubeconfig: a regular file only (a FIFO or device is refused without blocking), at most
/// [`KUBECONFIG_MAX`] bytes; relative file references resolve against its directory as kubectl does.
pub fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, KubeconfigReadError> {
    let fail = |reason: String| KubeconfigReadError {
        path: path.to_path_buf(),
        reason,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer, past any deadline.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_dir() {
            "a directory"
        } else {
            "not a file"
        };
        return Err(fail(format!(
            "is {kind}, not a regular file: a kubeconfig must be a file"
        )));
    }
    let too_big = || {
        fail(format!(
            "is larger than {} MiB, the most a kubeconfig may be",
            KUBECONFIG_MAX >> 20
        ))
    };
    if meta.len() > KUBECONFIG_MAX {
        return Err(too_big());
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(KUBECONFIG_MAX + 1)
        .read_to_end(&mut data)
        .map_err(|e| fail(e.to_string()))?;
    if data.len() as u64 > KUBECONFIG_MAX {
        return Err(too_big());
    }
    let text = String::from_utf8(data).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        fail(format!("line {line}: not UTF-8 text"))
    })?;
    let mut kc = parse_kubeconfig(&text).map_err(fail)?;
    if let Some(dir) = path.parent() {
        absolutize(&mut kc, dir);
    }
    Ok(kc)
}

/// Parses kubeconfig text (every YAML document, merged); the error names a line, never its text.
pub fn parse_kubeconfig(text: &str) -> Result<Kubeconfig, String> {
    Kubeconfig::from_yaml(text).map_err(|e| kubeconfig_error_text(&e))
}

/// `KUBECONFIG`'s files, merged in order as kubectl does; `None` when it is unset or empty.
fn from_env() -> Result<Option<Kubeconfig>, KubeconfigReadError> {
    let Some(value) = std::env::var_os("KUBECONFIG") else {
        return Ok(None);
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()) {
        let next = read_kubeconfig(&path)?;
        merged = Some(match merged {
            None => next,
            Some(m) => m.merge(next).map_err(|e| KubeconfigReadError {
                path: path.clone(),
                reason: kubeconfig_error_text(&e),
            })?,
        });
    }
    Ok(merged)
}

/// A kubeconfig error by line number only: YAML errors quote the text around them, which may be a token.
fn kubeconfig_error_text(e: &KubeconfigError) -> String {
    match e {
        KubeconfigError::Parse(p) => match p.location() {
            Some(l) => format!(
                "line {}: not a valid kubeconfig (the line is not shown: it may hold a credential)",
                l.line()
            ),
            None => "not a valid kubeconfig (YAML error; the text is not shown: it may hold a credential)".into(),
        },
        other => mask_secrets(&other.to_string()),
    }
}

/// Relative `certificate-authority`, `client-certificate`, `client-key`, `tokenFile` and exec
/// commands with a path separator resolve against the kubeconfig's directory.
fn absolutize(kc: &mut Kubeconfig, dir: &Path) {
    let fix = |p: &mut Option<String>| {
        if let Some(v) = p.as_deref()
            && Path::new(v).is_relative()
            && let Some(abs) = dir.join(v).to_str()
        {
            *p = Some(abs.to_string());
        }
    };
    for c in kc.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        fix(&mut c.certificate_authority);
    }
    for a in kc
        .auth_infos
        .iter_mut()
        .filter_map(|a| a.auth_info.as_mut())
    {
        fix(&mut a.client_certificate);
        fix(&mut a.client_key);
        fix(&mut a.token_file);
        if let Some(exec) = a.exec.as_mut()
            && exec.command.as_deref().is_some_and(|c| c.contains('/'))
        {
            fix(&mut exec.command);
        }
    }
}

/// The most one API response body may hold; a bigger one is cut off with an error naming this.
/// Six lists run at once, so a peer that streams to all of them costs ~6× this (under 100 MB);
/// a page of 500 objects (`PAGE`) fits while objects average under 16 KiB (Nodes are ~10 KiB).
pub const RESPONSE_MAX: usize = 8 << 20;

/// Text of an error in talking to the API, safe to print: names the response limit when it was hit,
/// never an exec plugin's output or the YAML around a parse error, secrets masked.
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    // The outer errors' texts include the inner ones', so a special error replaces the whole chain.
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<LengthLimitError>().is_some() {
            return format!(
                "the API server's response is larger than the {} MiB limit per response: stopped reading",
                RESPONSE_MAX >> 20
            );
        }
        if let Some(a) = err.downcast_ref::<AuthError>() {
            return mask_secrets(&auth_text(a));
        }
        if let Some(k) = err.downcast_ref::<KubeconfigError>() {
            return kubeconfig_error_text(k);
        }
        parts.push(err.to_string());
        cur = err.source();
    }
    mask_secrets(&dedup(&parts.join(": ")))
}

/// An exec plugin's failure without its output: its stdout is a credential, its stderr may echo one.
fn auth_text(a: &AuthError) -> String {
    match a {
        // `cmd` carries KUBERNETES_EXEC_INFO and the arguments: not shown either.
        AuthError::AuthExecRun { out, .. } => format!(
            "auth error: the kubeconfig's exec plugin failed ({}); its output is not shown (it may hold credentials)",
            out.status
        ),
        AuthError::AuthExecParse(_) => "auth error: the kubeconfig's exec plugin printed no valid ExecCredential (its output is not shown: it may hold credentials)".into(),
        AuthError::AuthExecStart(e) => {
            format!("auth error: the kubeconfig's exec plugin did not start: {e}")
        }
        other => other.to_string(),
    }
}

/// A client whose every connection and read is bounded by `timeout`.
pub async fn client(target: Target, timeout: Duration) -> Result<Client, ApiFailure> {
    let server = target.server.clone();
    let config_err = |e: &(dyn StdError + 'static)| ApiFailure {
        layer: Layer::Config,
        message: format!("{}: {}", target.source, describe(e)),
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
    let builder = ClientBuilder::try_from(config).map_err(|e| config_err(&e))?;
    Ok(builder.with_layer(&body_limit()).build())
}

/// Wraps a response's body in [`Limited`].
type LimitBody = fn(http::Response<Box<DynBody>>) -> http::Response<Limited<Box<DynBody>>>;

/// The tower layer that caps every response body at [`RESPONSE_MAX`] bytes: past it the body
/// errors, so an endless or huge answer costs at most that much memory.
fn body_limit() -> tower::util::MapResponseLayer<LimitBody> {
    tower::util::MapResponseLayer::new(|r: http::Response<Box<DynBody>>| {
        r.map(|b| Limited::new(b, RESPONSE_MAX))
    })
}

/// The layer at which talking to the API server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiFailure {
    pub layer: Layer,
    pub message: String,
    pub server: String,
}

impl ApiFailure {
    pub fn timeout(server: &str, timeout: Duration) -> ApiFailure {
        let server = mask_secrets(server);
        ApiFailure {
            layer: Layer::Timeout,
            message: format!(
                "no answer from {server} within the {:.1}s --timeout",
                timeout.as_secs_f64()
            ),
            server,
        }
    }

    /// Names the failing layer from a kube error and its whole source chain.
    pub fn classify(server: &str, e: &kube::Error, timeout: Duration) -> ApiFailure {
        let (layer, message) = classify(e, timeout);
        ApiFailure {
            layer,
            message: mask_secrets(&message),
            server: mask_secrets(server),
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
    if let Some(special) = special_text(e) {
        return (Layer::Other, special);
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

/// The response limit, an exec plugin or a kubeconfig error somewhere in the chain: told by [`describe`].
fn special_text(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<LengthLimitError>() || err.is::<AuthError>() || err.is::<KubeconfigError>() {
            return Some(describe(e));
        }
        cur = err.source();
    }
    None
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
