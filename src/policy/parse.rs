//! The policy file: its YAML shape (which is also its JSON Schema), and the validation that turns it into
//! a [`Policy`] or a `FILE:LINE: what is wrong` error before anything is checked.

use std::fmt;

use regex::{Regex, RegexBuilder};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{
    Deserialize, Deserializer,
    de::{self, SeqAccess, Visitor},
};
use serde_saphyr::Spanned;

use crate::{
    checks::{firewall::Net, sysctl},
    core::check::{Role, Status},
};

/// The most bytes a policy file may have: policies are kilobytes.
pub const MAX_POLICY: u64 = 1 << 20;
/// The most a compiled regex may take.
const REGEX_SIZE: usize = 1 << 20;

/// Why a policy file cannot be used: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    /// 1-based; 0 when the file could not be read at all.
    pub line: u64,
    pub what: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.what),
            n => write!(f, "{}:{n}: {}", self.file, self.what),
        }
    }
}

/// A site policy: traffic the firewall must accept, sysctl values, and what files must (not) say.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "k8sdoctor site policy")]
pub struct PolicyFile {
    /// Traffic the node's firewall must accept, evaluated like the `firewall.*` checks: `policy.flow.NAME`.
    #[serde(default)]
    #[schemars(with = "Vec<FlowSpec>")]
    flows: Vec<Spanned<FlowSpec>>,
    /// Kernel parameters that must have a value, now and at boot: `policy.sysctl.KEY`.
    #[serde(default)]
    #[schemars(with = "Vec<SysctlSpec>")]
    sysctls: Vec<Spanned<SysctlSpec>>,
    /// Files that must or must not match a regular expression: `policy.file.NAME`.
    #[serde(default)]
    #[schemars(with = "Vec<FileSpec>")]
    files: Vec<Spanned<FileSpec>>,
}

/// Traffic that must be accepted.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlowSpec {
    /// The check is `policy.flow.NAME`: letters, digits, `.`, `_`, `-`.
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    name: Spanned<String>,
    proto: Proto,
    /// A port (`9618`) or an inclusive range (`"30000-32767"`); none means every port. Not for icmp.
    #[serde(default)]
    #[schemars(with = "Option<Port>")]
    port: Option<Spanned<Port>>,
    /// Source network(s): a CIDR or address, or a list of them.
    #[schemars(with = "Cidrs")]
    from: Spanned<Cidrs>,
    /// The interface the traffic arrives on (`weave`, `eth0`); none means any.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    interface: Option<Spanned<String>>,
    /// `node` (to this host: the INPUT path, the default) or a CIDR (routed through it: the FORWARD path).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    to: Option<Spanned<String>>,
    /// Only on nodes of these roles (default: every node).
    #[serde(default)]
    roles: Option<Vec<Role>>,
    /// `fail` (the default) or `warn`.
    #[serde(default)]
    severity: Option<Severity>,
}

/// A kernel parameter and the value it must have.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SysctlSpec {
    /// `net.ipv4.ip_forward` (or `net/ipv4/ip_forward`); the check is `policy.sysctl.KEY`.
    #[schemars(with = "String")]
    key: Spanned<String>,
    /// The value, compared after trimming (runs of blanks count as one space); read now and at boot.
    #[schemars(with = "Scalar")]
    value: Spanned<Scalar>,
    /// Only on nodes of these roles (default: every node).
    #[serde(default)]
    roles: Option<Vec<Role>>,
    /// `fail` (the default) or `warn`.
    #[serde(default)]
    severity: Option<Severity>,
}

/// A file and what it must or must not say.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// The check is `policy.file.NAME`.
    #[schemars(with = "String", regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    name: Spanned<String>,
    /// Absolute path on the node (under `--root` when given).
    #[schemars(with = "String")]
    path: Spanned<String>,
    /// A regular expression (multi-line: `^` and `$` match at each line) that some line must match.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    must_match: Option<Spanned<String>>,
    /// A regular expression that no line may match.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    must_not_match: Option<Spanned<String>>,
    /// Only on nodes of these roles (default: every node).
    #[serde(default)]
    roles: Option<Vec<Role>>,
    /// `fail` (the default) or `warn`.
    #[serde(default)]
    severity: Option<Severity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Proto {
    Tcp,
    Udp,
    Sctp,
    Icmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Severity {
    Fail,
    Warn,
}

/// A port as written: a number, or text (`"30000-32767"`, `"9618"`). Deserialised by hand rather
/// than as an untagged enum, which would lose the location of a bad value.
#[derive(Debug)]
enum Port {
    Num(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or a range \"LO-HI\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                Ok(Port::Num(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                Ok(Port::Num(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Ok(Port::Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Port {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A port (1-65535) or an inclusive range \"LO-HI\".",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$"}
            ]
        })
    }
}

/// One CIDR or a list of them.
#[derive(Debug)]
enum Cidrs {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for Cidrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cidrs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CIDR or a list of CIDRs")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cidrs, E> {
                Ok(Cidrs::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cidrs, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    v.push(x);
                }
                Ok(Cidrs::Many(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Cidrs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cidrs".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A source network (`10.32.0.0/12`, an address) or a list of them.",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1}
            ]
        })
    }
}

/// A scalar taken as its text: `value: 1` and `value: "1"` are the same.
#[derive(Debug)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value (a string or a number)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Value".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "integer"]})
    }
}

/// Where an entry is written: `policy.yaml:12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: String,
    pub line: u64,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What every validated entry carries.
#[derive(Debug, Clone)]
pub struct Meta {
    pub name: String,
    pub at: At,
    pub roles: Vec<Role>,
    /// `Fail` or `Warn`.
    pub severity: Status,
}

/// Traffic the firewall must accept.
#[derive(Debug, Clone)]
pub struct Flow {
    pub meta: Meta,
    /// IP protocol number: 6 tcp, 17 udp, 132 sctp, 1 icmp.
    pub proto: u8,
    /// Inclusive destination ports; `None` = every port (and always for icmp).
    pub ports: Option<(u16, u16)>,
    pub from: Vec<Net>,
    pub iface: Option<String>,
    /// `None`: to this node (input); a network: routed through it (forward).
    pub to: Option<Net>,
}

/// A sysctl and the value it must have.
#[derive(Debug, Clone)]
pub struct SysctlRule {
    /// `meta.name` is the key, dotted.
    pub meta: Meta,
    pub value: String,
}

/// A file and what it must or must not say.
#[derive(Debug, Clone)]
pub struct FileRule {
    pub meta: Meta,
    pub path: String,
    pub must_match: Option<Regex>,
    pub must_not_match: Option<Regex>,
}

impl FileRule {
    /// What the rule wants of the file: `a line matches RE and no line matches RE`.
    pub fn wants(&self) -> String {
        let want = [
            self.must_match
                .as_ref()
                .map(|r| format!("a line matches {}", r.as_str())),
            self.must_not_match
                .as_ref()
                .map(|r| format!("no line matches {}", r.as_str())),
        ];
        want.into_iter().flatten().collect::<Vec<_>>().join(" and ")
    }
}

/// Every entry of every policy file, validated.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub flows: Vec<Flow>,
    pub sysctls: Vec<SysctlRule>,
    pub files: Vec<FileRule>,
}

/// Parses and validates one policy file's text, adding its entries to `into`; `file` names it in errors.
pub fn parse_into(file: &str, text: &str, into: &mut Policy) -> Result<(), PolicyError> {
    let err = |line: u64, what: String| PolicyError {
        file: file.to_string(),
        line: line.max(1),
        what,
    };
    if text.trim().is_empty() {
        return Err(err(
            1,
            "the policy is empty: give flows, sysctls or files".into(),
        ));
    }
    let raw: PolicyFile = serde_saphyr::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        err(line, saphyr_message(&e))
    })?;
    // Entries go into `into` as they are validated, so it also holds this file's earlier ones.
    let claim = |into: &Policy, kind: &str, name: &str, line: u64| -> Result<At, PolicyError> {
        if let Some(first) = into_seen(into, kind, name) {
            return Err(err(
                line,
                format!("duplicate {kind} {name:?} (first defined at {first})"),
            ));
        }
        Ok(At {
            file: file.to_string(),
            line,
        })
    };
    for f in &raw.flows {
        let spec = &f.value;
        let line = spec.name.referenced.line();
        let name = checked_name(&spec.name).map_err(|w| err(line, w))?;
        let at = claim(into, "flow", &name, line)?;
        let proto = match spec.proto {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
        };
        let ports = match &spec.port {
            None => None,
            Some(_) if proto == 1 => {
                let l = spec.port.as_ref().map_or(line, |p| p.referenced.line());
                return Err(err(l, "icmp has no ports: remove `port`".into()));
            }
            Some(p) => Some(port_range(&p.value).map_err(|w| err(p.referenced.line(), w))?),
        };
        let from_line = spec.from.referenced.line();
        let from = match &spec.from.value {
            Cidrs::One(s) => vec![cidr(s).map_err(|w| err(from_line, format!("from: {w}")))?],
            Cidrs::Many(v) if v.is_empty() => {
                return Err(err(from_line, "from: the list is empty".into()));
            }
            Cidrs::Many(v) => v
                .iter()
                .map(|s| {
                    let l = s.referenced.line();
                    cidr(&s.value)
                        .map_err(|w| err(if l > 0 { l } else { from_line }, format!("from: {w}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let iface = match &spec.interface {
            None => None,
            Some(i) => Some(
                interface(&i.value)
                    .map_err(|w| err(i.referenced.line(), format!("interface: {w}")))?,
            ),
        };
        let to = match &spec.to {
            None => None,
            Some(t) if t.value == "node" => None,
            Some(t) => Some(cidr(&t.value).map_err(|w| {
                err(
                    t.referenced.line(),
                    format!("to: {w} (give `node` or a CIDR)"),
                )
            })?),
        };
        if let Some(t) = to
            && from.iter().any(|f| f.is_v6() != t.is_v6())
        {
            return Err(err(
                spec.to.as_ref().map_or(line, |t| t.referenced.line()),
                "to: mixes IPv4 and IPv6 with `from`".into(),
            ));
        }
        into.flows.push(Flow {
            meta: meta(name, at, &spec.roles, spec.severity),
            proto,
            ports,
            from,
            iface,
            to,
        });
    }
    for s in &raw.sysctls {
        let spec = &s.value;
        let line = spec.key.referenced.line();
        let key = sysctl_key(&spec.key.value).map_err(|w| err(line, format!("key: {w}")))?;
        let at = claim(into, "sysctl", &key, line)?;
        let value = spec.value.value.0.trim().to_string();
        into.sysctls.push(SysctlRule {
            meta: meta(key, at, &spec.roles, spec.severity),
            value,
        });
    }
    for f in &raw.files {
        let spec = &f.value;
        let line = spec.name.referenced.line();
        let name = checked_name(&spec.name).map_err(|w| err(line, w))?;
        let at = claim(into, "file", &name, line)?;
        let path = &spec.path.value;
        if !path.starts_with('/') || path.contains('\0') {
            return Err(err(
                spec.path.referenced.line(),
                format!("path: {path:?} is not an absolute path"),
            ));
        }
        let re = |field: &str, r: &Option<Spanned<String>>| -> Result<Option<Regex>, PolicyError> {
            r.as_ref()
                .map(|r| {
                    RegexBuilder::new(&r.value)
                        .multi_line(true)
                        .size_limit(REGEX_SIZE)
                        .build()
                        .map_err(|e| {
                            err(
                                r.referenced.line(),
                                format!(
                                    "{field}: not a valid regular expression: {}",
                                    regex_message(&e)
                                ),
                            )
                        })
                })
                .transpose()
        };
        let must_match = re("must_match", &spec.must_match)?;
        let must_not_match = re("must_not_match", &spec.must_not_match)?;
        if must_match.is_none() && must_not_match.is_none() {
            return Err(err(
                line,
                format!("file {name:?} gives neither must_match nor must_not_match"),
            ));
        }
        into.files.push(FileRule {
            meta: meta(name, at, &spec.roles, spec.severity),
            path: path.clone(),
            must_match,
            must_not_match,
        });
    }
    if raw.flows.is_empty() && raw.sysctls.is_empty() && raw.files.is_empty() {
        return Err(err(
            1,
            "the policy is empty: give flows, sysctls or files".into(),
        ));
    }
    Ok(())
}

/// Where an entry of this kind and name was defined by an earlier file.
fn into_seen(p: &Policy, kind: &str, name: &str) -> Option<At> {
    let same = |m: &Meta| m.name.eq_ignore_ascii_case(name);
    match kind {
        "flow" => p.flows.iter().map(|f| &f.meta).find(|m| same(m)),
        "sysctl" => p.sysctls.iter().map(|f| &f.meta).find(|m| same(m)),
        _ => p.files.iter().map(|f| &f.meta).find(|m| same(m)),
    }
    .map(|m| m.at.clone())
}

fn meta(name: String, at: At, roles: &Option<Vec<Role>>, severity: Option<Severity>) -> Meta {
    Meta {
        name,
        at,
        roles: roles
            .clone()
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| vec![Role::ControlPlane, Role::Worker]),
        severity: match severity {
            Some(Severity::Warn) => Status::Warn,
            _ => Status::Fail,
        },
    }
}

/// serde-saphyr's message without the location it also carries (we print `FILE:LINE:` ourselves).
fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let cut = first
        .find(" at line ")
        .map_or(first, |i| &first[..i])
        .trim_end_matches(',');
    cut.to_string()
}

/// The regex crate's error on one line: its last line says what is wrong.
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_string()
}

fn checked_name(n: &Spanned<String>) -> Result<String, String> {
    let s = &n.value;
    let ok = s.len() <= 63
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.clone())
    } else {
        Err(format!(
            "name: {s:?} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

fn cidr(s: &str) -> Result<Net, String> {
    s.trim()
        .parse::<Net>()
        .map_err(|_| format!("{s:?} is not a CIDR or address"))
}

fn port_range(p: &Port) -> Result<(u16, u16), String> {
    let one = |n: i128| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port: {n} is not a port (1-65535)"))
    };
    match p {
        Port::Num(n) => one(*n).map(|n| (n, n)),
        Port::Text(t) => {
            let bad = || format!("port: {t:?} is not a port or a range \"LO-HI\"");
            let num = |s: &str| s.trim().parse::<i128>().map_err(|_| bad());
            let (lo, hi) = match t.split_once('-') {
                Some((a, b)) => (one(num(a)?)?, one(num(b)?)?),
                None => {
                    let n = one(num(t)?)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(format!("port: the range {t:?} runs backwards"));
            }
            Ok((lo, hi))
        }
    }
}

fn interface(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | '"' | '\'' | '\\'));
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an interface name"))
    }
}

/// A sysctl key, dotted (`net/ipv4/ip_forward` → `net.ipv4.ip_forward`), that maps to a path under /proc/sys.
fn sysctl_key(s: &str) -> Result<String, String> {
    let key = s.trim().replace('/', ".");
    let ok = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | ':' | '@'))
        });
    if ok && !sysctl::proc_path(&key).contains("..") {
        Ok(key)
    } else {
        Err(format!(
            "{s:?} is not a sysctl key (like net.ipv4.ip_forward)"
        ))
    }
}

/// The JSON Schema of the policy file.
pub fn schema() -> Schema {
    schemars::schema_for!(PolicyFile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut p = Policy::default();
        parse_into("p.yaml", text, &mut p).map(|_| p)
    }

    fn fails(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = "\
flows:
  - name: condor-from-pods
    proto: tcp
    port: 9618
    from: 10.32.0.0/12
    interface: weave
    roles: [worker]
    severity: warn
  - name: nodeports
    proto: udp
    port: \"30000-32767\"
    from: [192.168.0.0/16, 10.0.0.0/8]
    to: 10.244.0.0/16
  - name: ping
    proto: icmp
    from: 0.0.0.0/0
sysctls:
  - key: net.ipv4.ip_forward
    value: 1
  - key: net/ipv4/tcp_rmem
    value: \" 4096  87380 6291456 \"
files:
  - name: no-loopback-dns
    path: /etc/resolv.conf
    must_not_match: '^nameserver\\s+127\\.'
";

    #[test]
    fn a_good_policy_parses_with_every_form() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.flows.len(), 3);
        let f = &p.flows[0];
        assert_eq!(
            (f.proto, f.ports, f.iface.as_deref(), f.to, f.meta.severity),
            (6, Some((9618, 9618)), Some("weave"), None, Status::Warn)
        );
        assert_eq!(f.meta.roles, [Role::Worker]);
        assert_eq!(f.meta.at.to_string(), "p.yaml:2");
        let f = &p.flows[1];
        assert_eq!((f.proto, f.ports), (17, Some((30000, 32767))));
        assert_eq!(f.from.len(), 2);
        assert_eq!(f.to, Some("10.244.0.0/16".parse().unwrap()));
        assert_eq!(f.meta.roles, [Role::ControlPlane, Role::Worker]);
        assert_eq!((p.flows[2].proto, p.flows[2].ports), (1, None));
        assert_eq!(p.sysctls[0].value, "1");
        assert_eq!(p.sysctls[1].meta.name, "net.ipv4.tcp_rmem");
        assert_eq!(p.sysctls[1].meta.at.line, 20);
        assert!(
            p.files[0]
                .must_not_match
                .as_ref()
                .unwrap()
                .is_match("x\nnameserver 127.0.0.53\n")
        );
    }

    #[test]
    fn every_kind_of_bad_file_names_its_line() {
        let cases: &[(&str, &str)] = &[
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/8\n    colour: red\n",
                "p.yaml:5: unknown field `colour`",
            ),
            ("flow:\n  - name: a\n", "p.yaml:1: unknown field `flow`"),
            (
                "flows:\n  - name: a\n    proto: tcp\n    port: [1]\n    from: 10.0.0.0/8\n",
                "p.yaml:4:",
            ),
            (
                "flows:\n  - name: a\n    proto: tcpp\n    from: 10.0.0.0/8\n",
                "p.yaml:3: unknown variant `tcpp`",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/33\n",
                "p.yaml:4: from: \"10.0.0.0/33\" is not a CIDR or address",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from:\n      - 10.0.0.0/8\n      - 300.1.1.1\n",
                "p.yaml:6: from: \"300.1.1.1\" is not a CIDR",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    port: 70000\n    from: 10.0.0.0/8\n",
                "p.yaml:4: port: 70000 is not a port (1-65535)",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    port: \"20-10\"\n    from: 10.0.0.0/8\n",
                "p.yaml:4: port: the range \"20-10\" runs backwards",
            ),
            (
                "flows:\n  - name: a\n    proto: icmp\n    port: 1\n    from: 10.0.0.0/8\n",
                "p.yaml:4: icmp has no ports",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/8\n  - name: a\n    proto: udp\n    from: 10.0.0.0/8\n",
                "p.yaml:5: duplicate flow \"a\" (first defined at p.yaml:2)",
            ),
            (
                "files:\n  - name: f\n    path: /etc/hosts\n    must_match: '(unclosed'\n",
                "p.yaml:4: must_match: not a valid regular expression",
            ),
            (
                "files:\n  - name: f\n    path: etc/hosts\n    must_match: x\n",
                "p.yaml:3: path: \"etc/hosts\" is not an absolute path",
            ),
            (
                "files:\n  - name: f\n    path: /etc/hosts\n",
                "p.yaml:2: file \"f\" gives neither",
            ),
            (
                "sysctls:\n  - key: net..ipv4\n    value: 1\n",
                "p.yaml:2: key: \"net..ipv4\" is not a sysctl key",
            ),
            (
                "sysctls:\n  - key: net.ipv4.ip_forward\n    value: [1]\n",
                "p.yaml:3:",
            ),
            (
                "flows:\n  - name: a b\n    proto: tcp\n    from: 10.0.0.0/8\n",
                "p.yaml:2: name: \"a b\" must be",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/8\n    to: nod\n",
                "p.yaml:5: to: \"nod\" is not a CIDR or address (give `node` or a CIDR)",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/8\n    severity: error\n",
                "p.yaml:5: unknown variant `error`",
            ),
            (
                "flows:\n  - name: a\n    proto: tcp\n    from: 10.0.0.0/8\n    roles: [boss]\n",
                "p.yaml:5: unknown variant `boss`",
            ),
            ("flows: [\n", "p.yaml:"),
            ("\n", "p.yaml:1: the policy is empty"),
        ];
        for (text, want) in cases {
            let got = fails(text);
            assert!(got.starts_with(want), "{text:?}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn duplicates_across_files_name_the_first_file() {
        let mut p = Policy::default();
        parse_into(
            "a.yaml",
            "sysctls:\n  - key: vm.swappiness\n    value: 0\n",
            &mut p,
        )
        .unwrap();
        let e = parse_into(
            "b.yaml",
            "sysctls:\n  - key: vm/swappiness\n    value: 1\n",
            &mut p,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.yaml:2: duplicate sysctl \"vm.swappiness\" (first defined at a.yaml:2)"
        );
    }

    #[test]
    fn the_schema_names_every_field() {
        let s = serde_json::to_string(&schema()).unwrap();
        for field in [
            "flows",
            "sysctls",
            "files",
            "must_not_match",
            "interface",
            "severity",
            "\"icmp\"",
        ] {
            assert!(s.contains(field), "{field} missing from {s}");
        }
    }
}
