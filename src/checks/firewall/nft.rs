//! nftables rulesets: `nft -j list ruleset` JSON (own serde types; expressions stay `serde_json::Value` so one
//! statement we do not model makes one rule unknown instead of failing the whole ruleset) into the model.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::{
    model::{
        Action, AddrElem, Base, Chain, Family, Match, Origin, Rule, Ruleset, Verdict, proto_number,
    },
    net::Net,
};

#[derive(Debug, Error)]
pub enum NftError {
    #[error("not nft JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct Document {
    nftables: Vec<HashMap<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct JChain {
    family: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    hook: Option<String>,
    prio: Option<Value>,
    policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JRule {
    family: String,
    table: String,
    chain: String,
    handle: Option<u64>,
    #[serde(default)]
    expr: Vec<Value>,
    comment: Option<String>,
    /// The rule as written, when it comes from nft text rather than `nft -j`.
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct JSet {
    family: String,
    table: String,
    name: String,
    #[serde(default)]
    elem: Vec<Value>,
}

/// Parses `nft -j list ruleset` output.
pub fn parse_json(text: &str) -> Result<Ruleset, NftError> {
    let doc: Document = serde_json::from_str(text)?;
    from_objects(doc.nftables)
}

/// Builds the model from nft JSON objects (as printed by `nft -j`, or built by [`super::nft_text`]).
pub fn from_objects(objects: Vec<HashMap<String, Value>>) -> Result<Ruleset, NftError> {
    let mut sets: HashMap<(String, String, String), Vec<Value>> = HashMap::new();
    let mut chains: Vec<Chain> = Vec::new();
    let mut rules: Vec<JRule> = Vec::new();
    let bad = |what: &str, e: serde_json::Error| NftError::Invalid(format!("{what}: {e}"));
    for obj in objects {
        for (k, v) in obj {
            match k.as_str() {
                "chain" => {
                    let c: JChain = serde_json::from_value(v).map_err(|e| bad("chain", e))?;
                    let family = family(&c.family);
                    let Some(family) = family else { continue };
                    let base = match (c.kind.as_deref(), c.hook) {
                        (Some(_), Some(hook)) => Some(Base {
                            hook,
                            priority: c.prio.as_ref().and_then(priority).unwrap_or(0),
                            policy: match c.policy.as_deref() {
                                Some("drop") => Verdict::Drop,
                                _ => Verdict::Accept,
                            },
                        }),
                        _ => None,
                    };
                    // Only filter chains decide; nat/route chains on the input hook do not drop.
                    let base = base.filter(|_| c.kind.as_deref() == Some("filter"));
                    chains.push(Chain {
                        origin: Origin::Nftables,
                        family,
                        table: c.table,
                        name: c.name,
                        base,
                        rules: vec![],
                    });
                }
                "rule" => rules.push(serde_json::from_value(v).map_err(|e| bad("rule", e))?),
                "set" | "map" => {
                    let s: JSet = serde_json::from_value(v).map_err(|e| bad(&k, e))?;
                    sets.insert((s.family, s.table, s.name), s.elem);
                }
                _ => {}
            }
        }
    }
    for r in rules {
        let Some(fam) = family(&r.family) else {
            continue;
        };
        let Some(chain) = chains
            .iter_mut()
            .find(|c| c.family == fam && c.table == r.table && c.name == r.chain)
        else {
            return Err(NftError::Invalid(format!(
                "rule {:?} for unknown chain {} {} {}",
                r.handle, r.family, r.table, r.chain
            )));
        };
        let named = |n: &str| sets.get(&(r.family.clone(), r.table.clone(), n.to_string()));
        let (matches, action) = meaning(&r.expr, &named);
        let mut text = match &r.text {
            Some(t) => t.clone(),
            None => r.expr.iter().map(render_stmt).collect::<Vec<_>>().join(" "),
        };
        if let (Some(c), None) = (&r.comment, &r.text) {
            text.push_str(&format!(" comment \"{c}\""));
        }
        let position = chain.rules.len() + 1;
        chain.rules.push(Rule {
            position,
            handle: r.handle,
            text,
            matches,
            action,
        });
    }
    Ok(Ruleset { chains })
}

fn family(s: &str) -> Option<Family> {
    match s {
        "ip" => Some(Family::Ip),
        "ip6" => Some(Family::Ip6),
        "inet" => Some(Family::Inet),
        // arp, bridge, netdev: not on the IP input path.
        _ => None,
    }
}

/// A chain priority: a number, or a standard name (`filter`, `filter + 10`).
pub fn priority(v: &Value) -> Option<i32> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| n as i32),
        Value::String(s) => {
            let s = s.replace(' ', "");
            let (name, off) = match s.find(['+', '-']) {
                Some(i) if i > 0 => (&s[..i], s[i..].trim_start_matches('+').parse().ok()?),
                _ => (s.as_str(), 0),
            };
            let base = match name {
                "raw" => -300,
                "mangle" => -150,
                "dstnat" => -100,
                "filter" => 0,
                "security" => 50,
                "srcnat" => 100,
                n => n.parse().ok()?,
            };
            Some(base + off)
        }
        _ => None,
    }
}

type Named<'a> = dyn Fn(&str) -> Option<&'a Vec<Value>> + 'a;

/// A rule's statements → matches and the action.
fn meaning(expr: &[Value], named: &Named<'_>) -> (Vec<Match>, Action) {
    let mut matches = Vec::new();
    for (i, st) in expr.iter().enumerate() {
        let Some((k, v)) = st.as_object().and_then(|o| o.iter().next()) else {
            matches.push(Match::Unknown(render_stmt(st)));
            continue;
        };
        if let Some(a) = verdict(k, v) {
            // Statements after a verdict never run.
            let _ = i;
            return (matches, a);
        }
        match k.as_str() {
            "match" => matches.extend(
                match_stmt(v, named).unwrap_or_else(|| vec![Match::Unknown(render_stmt(st))]),
            ),
            "counter" | "log" | "mangle" | "notrack" | "set" | "meta" | "ct" | "comment" => {}
            "vmap" => {
                let a = vmap(v, named).unwrap_or_else(|| Action::Unknown(render_stmt(st)));
                return (matches, a);
            }
            _ => matches.push(Match::Unknown(render_stmt(st))),
        }
    }
    (matches, Action::Continue)
}

fn verdict(k: &str, v: &Value) -> Option<Action> {
    Some(match k {
        "accept" => Action::Accept,
        "drop" => Action::Drop,
        "reject" => Action::Reject,
        "return" => Action::Return,
        "continue" => Action::Continue,
        "jump" => Action::Jump(v.get("target")?.as_str()?.to_string()),
        "goto" => Action::Goto(v.get("target")?.as_str()?.to_string()),
        "queue" | "dnat" | "snat" | "masquerade" | "redirect" | "tproxy" | "synproxy" => {
            Action::Unknown(render_stmt(&serde_json::json!({ k: v })))
        }
        _ => return None,
    })
}

/// What a match's left side tests.
enum Key {
    Src(Option<bool>),
    Dst(Option<bool>),
    Iif,
    Oif,
    /// `ether saddr`: a MAC address.
    EtherSrc,
    L4proto,
    Nfproto,
    DPort(Option<u8>),
    SPort(Option<u8>),
    CtState,
    CtStatus,
    PktType,
    Mark,
    FibDaddrType,
}

fn key(left: &Value) -> Option<Key> {
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol")?.as_str()?;
        let field = p.get("field")?.as_str()?;
        let v6 = match proto {
            "ip" => Some(false),
            "ip6" => Some(true),
            _ => None,
        };
        return Some(match (proto, field) {
            (_, "saddr") if v6.is_some() => Key::Src(v6),
            (_, "daddr") if v6.is_some() => Key::Dst(v6),
            ("ip", "protocol") | ("ip6", "nexthdr") => Key::L4proto,
            ("ether", "saddr") => Key::EtherSrc,
            ("th", "dport") => Key::DPort(None),
            ("th", "sport") => Key::SPort(None),
            (p, "dport") => Key::DPort(Some(proto_number(p)?)),
            (p, "sport") => Key::SPort(Some(proto_number(p)?)),
            _ => return None,
        });
    }
    if let Some(m) = left.get("meta") {
        return Some(match m.get("key")?.as_str()? {
            "iifname" | "iif" => Key::Iif,
            "oifname" | "oif" => Key::Oif,
            "l4proto" => Key::L4proto,
            "nfproto" | "protocol" => Key::Nfproto,
            "pkttype" => Key::PktType,
            "mark" => Key::Mark,
            _ => return None,
        });
    }
    if let Some(c) = left.get("ct") {
        return match c.get("key")?.as_str()? {
            "state" => Some(Key::CtState),
            "status" => Some(Key::CtStatus),
            _ => None,
        };
    }
    if let Some(f) = left.get("fib") {
        let flags: Vec<&str> = match f.get("flags")? {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return None,
        };
        if f.get("result")?.as_str()? == "type" && flags.contains(&"daddr") {
            return Some(Key::FibDaddrType);
        }
    }
    None
}

/// The elements a right-hand side names: a value, a list, an anonymous `{"set": [...]}` or a named `@set`.
fn elements(right: &Value, named: &Named<'_>) -> Option<Vec<Value>> {
    match right {
        Value::String(s) if s.starts_with('@') => Some(named(&s[1..])?.clone()),
        Value::Array(a) => Some(a.clone()),
        Value::Object(o) if o.contains_key("set") => Some(o["set"].as_array()?.clone()),
        v => Some(vec![v.clone()]),
    }
}

/// A transport-header field the model does not know (`icmpv6 type`, `tcp flags`): nft only matches it on
/// packets of that protocol, so it is that protocol plus an unknown test.
fn header_of_protocol(m: &Value) -> Option<Vec<Match>> {
    let p = m.get("left")?.get("payload")?.get("protocol")?.as_str()?;
    if matches!(p, "ip" | "ip6" | "ether" | "th" | "vlan" | "arp") {
        return None;
    }
    Some(vec![
        Match::Proto {
            neg: false,
            any_of: vec![proto_number(p)?],
        },
        Match::Unknown(render_stmt(&serde_json::json!({ "match": m }))),
    ])
}

fn match_stmt(m: &Value, named: &Named<'_>) -> Option<Vec<Match>> {
    known_match(m, named).or_else(|| header_of_protocol(m))
}

fn known_match(m: &Value, named: &Named<'_>) -> Option<Vec<Match>> {
    let op = m.get("op")?.as_str()?;
    let key = key(m.get("left")?)?;
    let right = m.get("right")?;
    let neg = match op {
        "==" | "in" => false,
        "!=" => true,
        "<" | "<=" | ">" | ">=" => return port_compare(&key, op, right),
        _ => return None,
    };
    let owned = elements(right, named)?;
    let el: Vec<&Value> = owned.iter().collect();
    let strs = || {
        el.iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
    };
    let implied = |v6: Option<bool>, m: Match| match v6 {
        Some(v6) => vec![Match::Family { neg: false, v6 }, m],
        None => vec![m],
    };
    Some(match key {
        Key::Src(v6) => implied(
            v6,
            Match::Source {
                neg,
                any_of: addrs(&el)?,
            },
        ),
        Key::Dst(v6) => implied(
            v6,
            Match::Dest {
                neg,
                any_of: addrs(&el)?,
            },
        ),
        Key::Iif => vec![Match::InIface {
            neg,
            any_of: strs()?,
        }],
        Key::Oif => vec![Match::OutIface {
            neg,
            any_of: strs()?,
        }],
        Key::EtherSrc => vec![Match::Sliver {
            neg,
            what: render_stmt(&serde_json::json!({"match": m})),
        }],
        Key::L4proto => vec![Match::Proto {
            neg,
            any_of: el.iter().map(|v| proto_of(v)).collect::<Option<_>>()?,
        }],
        Key::Nfproto => match strs()?.as_slice() {
            [f] if f == "ipv4" || f == "ip" => vec![Match::Family { neg, v6: false }],
            [f] if f == "ipv6" || f == "ip6" => vec![Match::Family { neg, v6: true }],
            _ => return None,
        },
        Key::DPort(p) => vec![Match::DPort {
            neg,
            proto: p,
            any_of: ports(&el)?,
        }],
        Key::SPort(p) => vec![Match::SPort {
            neg,
            proto: p,
            any_of: ports(&el)?,
        }],
        Key::CtState => vec![Match::CtState {
            neg,
            any_of: strs()?,
        }],
        Key::CtStatus => vec![Match::CtStatus {
            neg,
            any_of: strs()?,
        }],
        Key::PktType => vec![Match::PktType {
            neg,
            any_of: strs()?,
        }],
        Key::FibDaddrType => vec![Match::DstType {
            neg,
            any_of: strs()?.iter().map(|s| s.to_ascii_uppercase()).collect(),
        }],
        Key::Mark => match el.as_slice() {
            [v] => vec![Match::Mark {
                neg,
                value: v.as_u64()? as u32,
                mask: u32::MAX,
            }],
            _ => return None,
        },
    })
}

fn port_compare(key: &Key, op: &str, right: &Value) -> Option<Vec<Match>> {
    let n = u16::try_from(right.as_u64()?).ok()?;
    let range = match op {
        "<" => (0, n.checked_sub(1)?),
        "<=" => (0, n),
        ">" => (n.checked_add(1)?, 65535),
        _ => (n, 65535),
    };
    Some(vec![match key {
        Key::DPort(p) => Match::DPort {
            neg: false,
            proto: *p,
            any_of: vec![range],
        },
        Key::SPort(p) => Match::SPort {
            neg: false,
            proto: *p,
            any_of: vec![range],
        },
        _ => return None,
    }])
}

fn proto_of(v: &Value) -> Option<u8> {
    match v {
        Value::Number(n) => u8::try_from(n.as_u64()?).ok(),
        Value::String(s) => proto_number(s),
        _ => None,
    }
}

fn addrs(el: &[&Value]) -> Option<Vec<AddrElem>> {
    el.iter()
        .map(|v| match v {
            Value::String(s) => s.parse().ok().map(AddrElem::Net),
            Value::Object(o) if o.contains_key("prefix") => {
                let p = &o["prefix"];
                let a = p.get("addr")?.as_str()?.parse().ok()?;
                Net::new(a, u8::try_from(p.get("len")?.as_u64()?).ok()?).map(AddrElem::Net)
            }
            Value::Object(o) if o.contains_key("range") => {
                let r = o["range"].as_array()?;
                Some(AddrElem::Range(
                    r.first()?.as_str()?.parse().ok()?,
                    r.get(1)?.as_str()?.parse().ok()?,
                ))
            }
            // Set elements may carry options: {"elem": {"val": ..., "timeout": ...}}.
            Value::Object(o) if o.contains_key("elem") => addrs(&[o["elem"].get("val")?])?.pop(),
            _ => None,
        })
        .collect()
}

fn ports(el: &[&Value]) -> Option<Vec<(u16, u16)>> {
    let one = |v: &Value| -> Option<u16> {
        match v {
            Value::Number(n) => u16::try_from(n.as_u64()?).ok(),
            Value::String(s) => s.parse().ok().or_else(|| service_port(s)),
            _ => None,
        }
    };
    el.iter()
        .map(|v| match v {
            Value::Object(o) if o.contains_key("range") => {
                let r = o["range"].as_array()?;
                Some((one(r.first()?)?, one(r.get(1)?)?))
            }
            Value::Object(o) if o.contains_key("elem") => ports(&[o["elem"].get("val")?])?.pop(),
            v => one(v).map(|p| (p, p)),
        })
        .collect()
}

/// Port numbers of the service names rulesets commonly use (`tcp dport ssh`).
fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ssh" => 22,
        "domain" => 53,
        "http" => 80,
        "https" => 443,
        "bgp" => 179,
        "dhcpv6-client" => 546,
        "bootps" => 67,
        "bootpc" => 68,
        _ => return None,
    })
}

/// `ct state vmap { established : accept, invalid : drop }` and the like.
fn vmap(v: &Value, named: &Named<'_>) -> Option<Action> {
    let key_expr = v.get("key")?;
    let data = v.get("data")?;
    let pairs: Vec<Value> = match data {
        Value::String(s) if s.starts_with('@') => named(&s[1..])?.clone(),
        Value::Object(o) => o.get("set")?.as_array()?.clone(),
        _ => return None,
    };
    let mut entries = Vec::new();
    for p in &pairs {
        let pair = p.as_array()?;
        let (k, act) = (pair.first()?, pair.get(1)?);
        let m = serde_json::json!({"op": "==", "left": key_expr, "right": k});
        let mut ms = match_stmt(&m, named)?;
        let (ak, av) = act.as_object()?.iter().next()?;
        let a = verdict(ak, av)?;
        // Single match per entry; the implied family test (ip saddr in inet) goes first.
        let m = if ms.len() == 1 {
            ms.pop()?
        } else {
            return None;
        };
        entries.push((m, a));
    }
    Some(Action::Vmap(entries))
}

/// nft syntax for a JSON statement, for citing a rule as `nft list ruleset` would print it.
pub fn render_stmt(st: &Value) -> String {
    let Some((k, v)) = st.as_object().and_then(|o| o.iter().next()) else {
        return st.to_string();
    };
    match k.as_str() {
        "match" => {
            let op = match v.get("op").and_then(Value::as_str) {
                Some("==") | Some("in") | None => String::new(),
                Some(o) => format!("{o} "),
            };
            format!(
                "{} {op}{}",
                render_expr(v.get("left").unwrap_or(&Value::Null)),
                render_expr(v.get("right").unwrap_or(&Value::Null))
            )
        }
        "accept" | "drop" | "return" | "continue" => k.clone(),
        "reject" => match v.get("type").and_then(Value::as_str) {
            Some(t) => format!(
                "reject with {t} {}",
                v.get("expr").map(render_expr).unwrap_or_default()
            )
            .trim_end()
            .to_string(),
            None => "reject".into(),
        },
        "jump" | "goto" => format!(
            "{k} {}",
            v.get("target").and_then(Value::as_str).unwrap_or("?")
        ),
        "counter" => "counter".into(),
        "log" => match v.get("prefix").and_then(Value::as_str) {
            Some(p) => format!("log prefix \"{p}\""),
            None => "log".into(),
        },
        "vmap" => format!(
            "{} vmap {}",
            render_expr(v.get("key").unwrap_or(&Value::Null)),
            render_expr(v.get("data").unwrap_or(&Value::Null))
        ),
        "unparsed" => v.as_str().unwrap_or_default().to_string(),
        _ => format!(
            "{k} {}",
            if v.is_null() {
                String::new()
            } else {
                v.to_string()
            }
        )
        .trim_end()
        .to_string(),
    }
}

fn render_expr(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a.iter().map(render_expr).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            let Some((k, v)) = o.iter().next() else {
                return "{}".into();
            };
            match k.as_str() {
                "payload" => format!(
                    "{} {}",
                    v.get("protocol").and_then(Value::as_str).unwrap_or("?"),
                    v.get("field").and_then(Value::as_str).unwrap_or("?")
                ),
                "meta" => {
                    let key = v.get("key").and_then(Value::as_str).unwrap_or("?");
                    if matches!(key, "iifname" | "oifname" | "iif" | "oif" | "mark") {
                        key.to_string()
                    } else {
                        format!("meta {key}")
                    }
                }
                "ct" => format!("ct {}", v.get("key").and_then(Value::as_str).unwrap_or("?")),
                "prefix" => format!(
                    "{}/{}",
                    v.get("addr").map(render_expr).unwrap_or_default(),
                    v.get("len").map(render_expr).unwrap_or_default()
                ),
                "range" => match v.as_array().map(Vec::as_slice) {
                    Some([a, b]) => format!("{}-{}", render_expr(a), render_expr(b)),
                    _ => v.to_string(),
                },
                "set" => match v {
                    Value::Array(a) => format!(
                        "{{ {} }}",
                        a.iter()
                            .map(|x| match x.as_array().map(Vec::as_slice) {
                                Some([k, act]) =>
                                    format!("{} : {}", render_expr(k), render_stmt(act)),
                                _ => render_expr(x),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    v => render_expr(v),
                },
                "fib" => format!(
                    "fib {} {}",
                    v.get("flags")
                        .map(render_expr)
                        .unwrap_or_default()
                        .replace(',', " . "),
                    v.get("result").map(render_expr).unwrap_or_default()
                ),
                _ => e.to_string(),
            }
        }
        v => v.to_string(),
    }
}
