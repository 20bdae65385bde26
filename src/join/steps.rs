//! The pure half of each discovery step: from what the command says and what the server answered to
//! a finding, in kubeadm's order (parse → cluster-info → token → CA pin → clock).

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;

use super::{
    command::{JoinCommand, looks_like_token, shown_arg},
    jws::Verdict,
    net::Response,
    pin::{self, Cert},
    token::{CaHash, Token},
};
use crate::{
    core::check::{Finding, Status},
    mask::mask_token,
};

/// A step's outcome: a finding to report and the value later steps need, or the finding that stops them.
pub type Step<T> = Result<(Finding, T), Finding>;

/// `host:port` as kubeadm dials it (`https://<endpoint>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port`; the messages follow Go's `net.SplitHostPort`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if s.contains("://") {
            return Err(format!(
                "endpoint {s:?} must be host:port without a scheme (kubeadm adds https:// itself)"
            ));
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((h, p)) = rest.split_once(']') else {
                return Err(format!("endpoint {s:?}: missing ']' in address"));
            };
            match p.strip_prefix(':') {
                Some(p) => (h, p),
                None => return Err(format!("endpoint {s:?}: missing port in address")),
            }
        } else {
            let Some((h, p)) = s.rsplit_once(':') else {
                return Err(format!(
                    "endpoint {s:?}: missing port in address (the API server listens on host:6443)"
                ));
            };
            if h.contains(':') {
                return Err(format!(
                    "endpoint {s:?}: too many colons in address (write an IPv6 address as [fd00::1]:6443)"
                ));
            }
            (h, p)
        };
        if host.is_empty() {
            return Err(format!("endpoint {s:?}: missing host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(Endpoint {
                host: host.to_string(),
                port: p,
            }),
            _ => Err(format!("endpoint {s:?}: invalid port {port:?}")),
        }
    }

    /// `host:port`, brackets around an IPv6 host: the Host header and the URL authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the command asks discovery to do, validated.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub endpoint: Endpoint,
    pub token: Token,
    pub pins: Vec<CaHash>,
}

/// Judges the `--token` value as kubeadm's validation does: the token, or why it is not one.
pub fn judge_token(t: &str) -> Result<Token, String> {
    Token::parse(t).map_err(|e| e.to_string())
}

/// `join.parse`: every problem kubeadm's validation would report, at once; the unsafe flag warns.
pub fn parse(cmd: &JoinCommand) -> Step<Discovery> {
    parse_with(cmd, cmd.token.as_deref().map(judge_token))
}

/// [`parse`] with the token already judged (`None` when the command has none): a replay has the
/// verdict its bundle recorded, not the secret it was made from.
pub fn parse_with(cmd: &JoinCommand, token: Option<Result<Token, String>>) -> Step<Discovery> {
    let mut problems: Vec<String> = cmd
        .problems
        .iter()
        .map(|p| format!("kubeadm join would refuse the command: {p}"))
        .collect();
    let mut evidence = Vec::new();
    let endpoint = match cmd.endpoints.split_first() {
        None => {
            problems.push(
                "no API server endpoint: kubeadm join takes host:port as its argument".into(),
            );
            None
        }
        Some((first, rest)) => {
            if !rest.is_empty() {
                let shown: Vec<String> = cmd.endpoints.iter().map(|e| shown_arg(e)).collect();
                evidence.push(format!(
                    "more than one endpoint given ({}); kubeadm uses the first",
                    shown.join(", ")
                ));
            }
            Endpoint::parse(first).map_err(|e| problems.push(e)).ok()
        }
    };
    let token = match token {
        None => {
            let stray = cmd.endpoints.iter().find(|e| looks_like_token(e));
            problems.push(match stray {
                Some(t) => format!(
                    "no token: the argument {} looks like a token; pass it as --token <id>.<secret>",
                    mask_token(t)
                ),
                None => "no token: pass --token <id>.<secret> (or --discovery-token)".into(),
            });
            None
        }
        Some(t) => t.map_err(|e| problems.push(e)).ok(),
    };
    let mut pins = Vec::new();
    for h in &cmd.hashes {
        match CaHash::parse(h) {
            Ok(p) => pins.push(p),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if cmd.hashes.is_empty() && !cmd.unsafe_skip_ca {
        problems.push("no --discovery-token-ca-cert-hash: kubeadm refuses token discovery without caCertHashes unless --discovery-token-unsafe-skip-ca-verification is given".into());
    }
    if !cmd.ignored.is_empty() {
        evidence.push(format!(
            "not bearing on discovery (ignored): {}",
            cmd.ignored.join(" ")
        ));
    }
    let (Some(endpoint), Some(token), true) = (endpoint, token, problems.is_empty()) else {
        return Err(Finding::fail(problems.join("; ")).evidence_all(evidence));
    };
    let mut f = Finding::pass(format!(
        "kubeadm join {} with token {} and {} CA pin(s)",
        endpoint.authority(),
        token.masked(),
        pins.len()
    ));
    f.evidence
        .push(format!("endpoint https://{}", endpoint.authority()));
    f.evidence
        .push(format!("token id {} (secret masked)", token.id));
    f.evidence
        .extend(pins.iter().map(|p| format!("CA pin {p}")));
    f.evidence.extend(evidence);
    if cmd.unsafe_skip_ca {
        f.status = Status::Warn;
        if pins.is_empty() {
            f.message = format!(
                "{}; --discovery-token-unsafe-skip-ca-verification: the CA is not pinned, so anyone who holds the token can impersonate the API server",
                f.message
            );
        } else {
            f.message = format!(
                "{}; --discovery-token-unsafe-skip-ca-verification has no effect: the CA pins are still checked",
                f.message
            );
        }
        f.remediation = Some(
            "drop --discovery-token-unsafe-skip-ca-verification and pass --discovery-token-ca-cert-hash sha256:<hash> (kubeadm token create --print-join-command prints it)".into(),
        );
    }
    Ok((
        f,
        Discovery {
            endpoint,
            token,
            pins,
        },
    ))
}

/// The cluster-info ConfigMap's data.
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    pub data: BTreeMap<String, String>,
}

pub const JWS_PREFIX: &str = "jws-kubeconfig-";
pub const CLUSTER_INFO_PATH: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

impl ClusterInfo {
    pub fn kubeconfig(&self) -> &str {
        self.data.get("kubeconfig").map_or("", String::as_str)
    }

    /// The token ids cluster-info carries a signature for.
    pub fn signed_ids(&self) -> Vec<&str> {
        self.data
            .keys()
            .filter_map(|k| k.strip_prefix(JWS_PREFIX))
            .collect()
    }
}

#[derive(Deserialize)]
struct ConfigMap {
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    message: String,
}

/// `join.cluster-info`: the anonymous GET's answer.
pub fn cluster_info(resp: &Response, url: &str) -> Step<ClusterInfo> {
    let got = format!("GET {url} → HTTP {} ({} bytes)", resp.status, resp.size);
    let server_says = serde_json::from_slice::<StatusBody>(&resp.body)
        .ok()
        .filter(|s| !s.message.is_empty())
        .map(|s| format!("the API server says: {}", s.message));
    let fail = |msg: &str, fix: &str| {
        Err(Finding::fail(msg)
            .evidence(&got)
            .evidence_all(server_says.clone())
            .remediation(fix))
    };
    match resp.status {
        200 => {}
        401 => {
            return fail(
                "anonymous requests are rejected (401 Unauthorized): kubeadm's discovery reads cluster-info without credentials",
                "enable anonymous auth on the API server (kube-apiserver --anonymous-auth=true, the default), or join with --discovery-file",
            );
        }
        403 => {
            return fail(
                "anonymous access to cluster-info is forbidden (403): the kube-public Role/RoleBinding kubeadm:bootstrap-signer-clusterinfo is missing",
                "on the control plane: kubeadm init phase bootstrap-token (re-creates the RBAC rules and cluster-info)",
            );
        }
        404 => {
            return fail(
                "the cluster-info ConfigMap does not exist (404): this API server was not set up by kubeadm for token discovery",
                "on the control plane: kubeadm init phase bootstrap-token (creates kube-public/cluster-info)",
            );
        }
        s => {
            return fail(
                &format!("unexpected HTTP {s} for cluster-info: is this endpoint the API server?"),
                "check that the endpoint is the API server (port 6443), not a proxy or another service",
            );
        }
    }
    let cm: ConfigMap = serde_json::from_slice(&resp.body).map_err(|e| {
        Finding::fail(format!("the cluster-info answer is not a ConfigMap: {e}")).evidence(&got)
    })?;
    let info = ClusterInfo {
        data: cm.data.unwrap_or_default(),
    };
    if info.kubeconfig().is_empty() {
        return Err(Finding::fail(
            "there is no kubeconfig key in the cluster-info ConfigMap: this API server isn't set up for token bootstrapping",
        )
        .evidence(&got)
        .remediation("on the control plane: kubeadm init phase bootstrap-token"));
    }
    let mut f = Finding::pass("cluster-info is readable anonymously, as kubeadm's discovery needs")
        .evidence(got);
    let ids = info.signed_ids();
    f.evidence.push(if ids.is_empty() {
        "signed for no token id (no valid bootstrap token with usage signing)".into()
    } else {
        format!("signed for token id(s): {}", ids.join(", "))
    });
    if let Ok(kc) = Kubeconfig::parse(info.kubeconfig())
        && let Some(c) = kc.clusters.last()
    {
        f.evidence.push(format!(
            "its kubeconfig names the API server {} (kubeadm's TLS bootstrap then talks to that address)",
            c.cluster.server
        ));
    }
    Ok((f, info))
}

/// `join.token`: the signature for the token's id exists and verifies with its secret, as `verify`
/// judges it from the signature and the signed kubeconfig (`jws::verify` live; a replay reads the
/// verdict its bundle recorded, since the secret that decides it is not there).
pub fn token(
    info: &ClusterInfo,
    token: &Token,
    verify: impl FnOnce(&str, &str) -> Result<Verdict, Finding>,
) -> Step<()> {
    let key = format!("{JWS_PREFIX}{}", token.id);
    let others = info.signed_ids();
    let present = if others.is_empty() {
        "cluster-info carries no token signature at all".to_string()
    } else {
        format!(
            "cluster-info is signed for token id(s): {}",
            others.join(", ")
        )
    };
    let Some(sig) = info.data.get(&key).filter(|s| !s.is_empty()) else {
        return Err(Finding::fail(format!(
            "token id {:?} is unknown to this cluster or has expired (no {key} signature in cluster-info)",
            token.id
        ))
        .evidence(present)
        .evidence("kubeadm would stop with: token id is invalid for this cluster or it has expired")
        .remediation("bootstrap tokens live 24 h by default: on the control plane run kubeadm token create --print-join-command and use the command it prints"));
    };
    match verify(sig, info.kubeconfig())? {
        Verdict::Valid => Ok((
            Finding::pass(format!(
                "cluster-info is signed for token {} and the HS256 signature verifies with its secret",
                token.masked()
            ))
            .evidence(format!("{key} verifies over the kubeconfig ({} bytes)", info.kubeconfig().len())),
            (),
        )),
        Verdict::WrongSecret => Err(Finding::fail(format!(
            "the token's secret is wrong: cluster-info is signed for token id {:?}, but not with the secret in {}",
            token.id,
            token.masked()
        ))
        .evidence(present)
        .evidence("kubeadm would stop with: failed to verify JWS signature of received cluster info object, can't trust this API Server")
        .remediation("copy the whole token again from kubeadm init's output, or on the control plane run kubeadm token create --print-join-command")),
        Verdict::OtherHeader(h) => Err(Finding::fail(format!(
            "the {key} signature has an unexpected header {h}: it was not made by kubeadm's bootstrap signer for this token id"
        ))
        .remediation("on the control plane: kubeadm token delete and kubeadm token create --print-join-command")),
        Verdict::Malformed(why) => Err(Finding::fail(format!(
            "the {key} signature is malformed: {why}"
        ))
        .remediation("on the control plane: kubeadm token delete and kubeadm token create --print-join-command")),
        Verdict::NoSecret => Err(Finding::skip(format!(
            "cluster-info is signed for token id {:?}, but the token's secret is not at hand (a bundle never holds it), so the signature cannot be verified",
            token.id
        ))),
    }
}

/// The parts of cluster-info's kubeconfig that discovery reads.
#[derive(Debug, Deserialize)]
pub struct Kubeconfig {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub clusters: Vec<NamedCluster>,
}

#[derive(Debug, Deserialize)]
pub struct NamedCluster {
    pub cluster: ClusterEntry,
}

#[derive(Debug, Deserialize)]
pub struct ClusterEntry {
    #[serde(default)]
    pub server: String,
    #[serde(rename = "certificate-authority-data", default)]
    pub certificate_authority_data: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

impl Kubeconfig {
    pub fn parse(text: &str) -> Result<Kubeconfig, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

/// The CA bundle of cluster-info's kubeconfig: kubeadm takes the (last) cluster's CA data.
pub fn cluster_cas(kubeconfig: &str) -> Result<Vec<Cert>, String> {
    let kc = Kubeconfig::parse(kubeconfig)
        .map_err(|e| format!("couldn't parse the kubeconfig in the cluster-info ConfigMap: {e}"))?;
    let c = kc
        .clusters
        .last()
        .ok_or("malformed kubeconfig in the cluster-info ConfigMap: it has no cluster")?;
    let data = c
        .cluster
        .certificate_authority_data
        .as_deref()
        .filter(|d| !d.trim().is_empty())
        .ok_or("the kubeconfig in cluster-info has no certificate-authority-data")?;
    let pem = B64
        .decode(data.trim())
        .map_err(|e| format!("certificate-authority-data is not base64: {e}"))?;
    Cert::from_pem_bundle(&pem)
        .map_err(|e| format!("failed to parse the cluster CA from cluster-info: {e}"))
}

/// `join.ca-pin`: a CA in cluster-info has a pinned key, and the server's TLS chain verifies against the CA.
pub fn ca_pin(
    info: &ClusterInfo,
    disc: &Discovery,
    chain: &[CertificateDer<'static>],
    now: UnixTime,
    server_date: Option<&str>,
) -> Step<()> {
    // Any chain failure shows both clocks: a validity failure is often this node's clock.
    let clocks = || {
        server_date.map(|d| {
            let local = jiff::Timestamp::from_second(now.as_secs() as i64)
                .map_or_else(|_| "?".into(), |t| t.to_string());
            format!("the API server's clock (Date header): {d}; this node's: {local}")
        })
    };
    let cas = cluster_cas(info.kubeconfig()).map_err(|e| {
        Finding::fail(e).remediation(
            "on the control plane: kubeadm init phase bootstrap-token (re-uploads cluster-info)",
        )
    })?;
    let described: Vec<String> = cas
        .iter()
        .map(|c| format!("cluster-info CA: {} — pin {}", c.summary, c.pin))
        .collect();
    let verify = pin::verify_chain(&cas, chain, &disc.endpoint.host, now);
    if disc.pins.is_empty() {
        return match verify {
            Ok(()) => Ok((
                Finding::skip("no CA pin to compare (--discovery-token-unsafe-skip-ca-verification); the server's TLS chain verifies against the CA from cluster-info")
                    .evidence_all(described),
                (),
            )),
            Err(e) => Err(Finding::fail(e).evidence_all(described).evidence_all(clocks())),
        };
    }
    let given = disc.pins.iter().map(|p| format!("given pin {p}"));
    let Some(hit) = pin::matching(&cas, &disc.pins) else {
        return Err(Finding::fail(
            "none of the CA certificates in cluster-info has the public key the --discovery-token-ca-cert-hash pins: the hash is wrong, or this endpoint belongs to another cluster",
        )
        .evidence_all(given)
        .evidence_all(described)
        .remediation("on the control plane, print the right hash: openssl x509 -pubkey -in /etc/kubernetes/pki/ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256 (or kubeadm token create --print-join-command)"));
    };
    let hit = format!("pinned CA: {} — {}", hit.summary, hit.pin);
    match verify {
        Ok(()) => Ok((
            Finding::pass("the CA in cluster-info matches the pin and the server's TLS chain verifies against it")
                .evidence(hit),
            (),
        )),
        Err(e) => Err(Finding::fail(e).evidence(hit).evidence_all(clocks())),
    }
}

/// Local and server clocks may differ this much before certificates look not yet valid or expired.
pub const MAX_SKEW_SECS: i64 = 300;

/// `join.clock`: the server's `Date` header against the local clock at the time of the response.
pub fn clock(date: Option<&str>, local: jiff::Timestamp) -> Finding {
    let Some(date) = date else {
        return Finding::skip("the API server sent no Date header to compare clocks with");
    };
    let server = match jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(date) {
        Ok(t) => t,
        Err(e) => {
            return Finding::skip(format!(
                "cannot read the server's Date header {date:?}: {e}"
            ));
        }
    };
    let skew = local.as_second() - server.as_second();
    let evidence = [
        format!("server Date: {date}"),
        format!(
            "local clock: {}",
            local.round(jiff::Unit::Second).unwrap_or(local)
        ),
    ];
    let how = |s: i64| {
        let a = s.unsigned_abs();
        let text = if a >= 60 {
            format!("{} min {} s", a / 60, a % 60)
        } else {
            format!("{a} s")
        };
        format!("{text} {}", if s >= 0 { "ahead of" } else { "behind" })
    };
    if skew.abs() > MAX_SKEW_SECS {
        Finding::warn(format!(
            "this node's clock is {} the API server's (more than 5 min): certificates will look not yet valid or expired to one side",
            how(skew)
        ))
        .evidence_all(evidence)
        .remediation("synchronise the clock: timedatectl set-ntp true (or chronyc makestep), on this node and the control plane")
    } else {
        Finding::pass(format!(
            "the clocks agree within 5 min (this node is {} the API server)",
            how(skew)
        ))
        .evidence_all(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::{command::shell_words, jws};

    fn cmd(line: &str) -> JoinCommand {
        JoinCommand::parse(&shell_words(line).unwrap()).unwrap()
    }

    const HASH: &str = "sha256:1ca7fbf4d402849f34a6dbf5810ee584df015d6deeb55ca6ff1f0a87773b97f9";

    #[test]
    fn endpoints_parse_like_split_host_port() {
        let ok = |s: &str| Endpoint::parse(s).unwrap();
        assert_eq!(ok("192.168.1.2:6443").authority(), "192.168.1.2:6443");
        assert_eq!(ok("[fd00::1]:6443").host, "fd00::1");
        assert_eq!(ok("[fd00::1]:6443").authority(), "[fd00::1]:6443");
        assert_eq!(ok("cp.example.com:443").port, 443);
        let err = |s: &str| Endpoint::parse(s).unwrap_err();
        assert!(err("192.168.1.2").contains("missing port"));
        assert!(err("https://192.168.1.2:6443").contains("without a scheme"));
        assert!(err("fd00::1:6443").contains("too many colons"));
        assert!(err("h:0").contains("invalid port"));
        assert!(err("h:99999").contains("invalid port"));
        assert!(err(":6443").contains("missing host"));
        assert!(err("[fd00::1]").contains("missing port"));
    }

    #[test]
    fn the_guides_command_passes_parse() {
        let (f, d) = parse(&cmd(&format!(
            "kubeadm join --token a24a11.0e6b932b0907deff 192.168.1.2:6443 --discovery-token-ca-cert-hash {HASH}"
        )))
        .unwrap();
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert_eq!(d.endpoint.authority(), "192.168.1.2:6443");
        assert_eq!(d.pins.len(), 1);
        assert!(!format!("{f:?}").contains("0e6b932b0907deff"));
    }

    #[test]
    fn parse_failures_have_their_own_messages() {
        let msg = |line: &str| parse(&cmd(line)).unwrap_err().message;
        let bad_token = msg(&format!(
            "kubeadm join h:6443 --token a24a11.0E6B932B0907DEFF --discovery-token-ca-cert-hash {HASH}"
        ));
        assert!(
            bad_token.contains("upper-case") && !bad_token.contains("0E6B932B0907DEFF"),
            "{bad_token}"
        );
        let bad_hash = msg(
            "kubeadm join h:6443 --token a24a11.0e6b932b0907deff --discovery-token-ca-cert-hash sha256:1ca7",
        );
        assert!(bad_hash.contains("found 4 hex digits"), "{bad_hash}");
        let no_port = msg(&format!(
            "kubeadm join 192.168.1.2 --token a24a11.0e6b932b0907deff --discovery-token-ca-cert-hash {HASH}"
        ));
        assert!(no_port.contains("missing port"), "{no_port}");
        let no_pin = msg("kubeadm join h:6443 --token a24a11.0e6b932b0907deff");
        assert!(no_pin.contains("without caCertHashes"), "{no_pin}");
        let no_token = msg(&format!(
            "kubeadm join h:6443 --discovery-token-ca-cert-hash {HASH}"
        ));
        assert!(no_token.starts_with("no token"), "{no_token}");
        let unknown = msg(&format!(
            "kubeadm join h:6443 --tokn a24a11.0e6b932b0907deff --discovery-token-ca-cert-hash {HASH}"
        ));
        assert!(unknown.contains("unknown flag: --tokn"), "{unknown}");
    }

    #[test]
    fn the_unsafe_flag_warns() {
        let (f, d) = parse(&cmd(
            "kubeadm join h:6443 --token a24a11.0e6b932b0907deff --discovery-token-unsafe-skip-ca-verification",
        ))
        .unwrap();
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("not pinned"), "{}", f.message);
        assert!(d.pins.is_empty());
        let (f, _) = parse(&cmd(&format!(
            "kubeadm join h:6443 --token a24a11.0e6b932b0907deff --discovery-token-unsafe-skip-ca-verification --discovery-token-ca-cert-hash {HASH}"
        )))
        .unwrap();
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("no effect"), "{}", f.message);
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
            size: body.len(),
        }
    }

    #[test]
    fn cluster_info_answers_are_told_apart() {
        let url = "https://h:6443/x";
        let m = |r: Response| cluster_info(&r, url).unwrap_err().message;
        assert!(m(resp(401, "{}")).contains("401"));
        assert!(
            m(resp(
                403,
                r#"{"kind":"Status","message":"configmaps \"cluster-info\" is forbidden"}"#
            ))
            .contains("forbidden")
        );
        assert!(m(resp(404, "")).contains("does not exist"));
        assert!(m(resp(500, "")).contains("HTTP 500"));
        assert!(m(resp(200, "<html>")).contains("not a ConfigMap"));
        assert!(m(resp(200, r#"{"data":{}}"#)).contains("no kubeconfig key"));
        let (f, info) = cluster_info(&resp(200, r#"{"data":{"kubeconfig":"clusters:\n- cluster:\n    server: https://10.0.0.1:6443\n  name: \"\"\n","jws-kubeconfig-abcdef":"x..y"}}"#), url).unwrap();
        assert_eq!(f.status, Status::Pass);
        assert_eq!(info.signed_ids(), ["abcdef"]);
        assert!(
            f.evidence
                .iter()
                .any(|e| e.contains("https://10.0.0.1:6443")),
            "{:?}",
            f.evidence
        );
    }

    fn token(info: &ClusterInfo, t: &Token) -> Step<()> {
        super::token(info, t, |sig, content| Ok(jws::verify(sig, content, t)))
    }

    #[test]
    fn token_absent_and_wrong_secret_are_different_findings() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        let kubeconfig = "apiVersion: v1\nkind: Config\n".to_string();
        let mut info = ClusterInfo::default();
        info.data.insert("kubeconfig".into(), kubeconfig.clone());
        let absent = token(&info, &t).unwrap_err();
        assert!(
            absent
                .message
                .contains("unknown to this cluster or has expired"),
            "{}",
            absent.message
        );
        assert!(
            absent
                .remediation
                .unwrap()
                .contains("kubeadm token create --print-join-command")
        );
        let other = Token::parse("abcdef.ffffffffffffffff").unwrap();
        info.data.insert(
            format!("{JWS_PREFIX}abcdef"),
            jws::detached_signature(&kubeconfig, &other).unwrap(),
        );
        let wrong = token(&info, &t).unwrap_err();
        assert!(
            wrong.message.contains("secret is wrong"),
            "{}",
            wrong.message
        );
        assert!(!wrong.message.contains("0123456789abcdef"));
        info.data.insert(
            format!("{JWS_PREFIX}abcdef"),
            jws::detached_signature(&kubeconfig, &t).unwrap(),
        );
        assert_eq!(token(&info, &t).unwrap().0.status, Status::Pass);
    }

    #[test]
    fn clock_skew_over_five_minutes_warns() {
        let local: jiff::Timestamp = "2026-11-25T16:00:00Z".parse().unwrap();
        let f = clock(Some("Wed, 25 Nov 2026 15:59:58 GMT"), local);
        assert_eq!(f.status, Status::Pass, "{f:?}");
        assert!(f.message.contains("2 s ahead of"), "{}", f.message);
        let f = clock(Some("Wed, 25 Nov 2026 16:07:03 GMT"), local);
        assert_eq!(f.status, Status::Warn);
        assert!(f.message.contains("7 min 3 s behind"), "{}", f.message);
        assert_eq!(clock(None, local).status, Status::Skip);
        assert_eq!(clock(Some("yesterday"), local).status, Status::Skip);
    }

    #[test]
    fn ca_data_problems_are_reported() {
        assert!(
            cluster_cas("clusters: [unclosed")
                .unwrap_err()
                .contains("couldn't parse")
        );
        assert!(
            cluster_cas("clusters: null\n")
                .unwrap_err()
                .contains("no cluster")
        );
        assert!(
            cluster_cas("clusters:\n- cluster:\n    server: https://x\n")
                .unwrap_err()
                .contains("no certificate-authority-data")
        );
        assert!(
            cluster_cas("clusters:\n- cluster:\n    certificate-authority-data: '!!'\n")
                .unwrap_err()
                .contains("not base64")
        );
    }
}
