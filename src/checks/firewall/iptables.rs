//! Parser for `iptables-save` / `ip6tables-save` output (and the saved files `iptables-restore` loads).

use thiserror::Error;

use super::model::{
    Action, AddrElem, Base, Chain, Family, Match, Origin, Rule, Ruleset, Verdict, proto_number,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
}

/// Targets that never end evaluation (logging, marking, accounting).
const NON_TERMINATING: &[&str] = &[
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "TRACE",
    "AUDIT",
    "SET",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "CONNSECMARK",
    "SECMARK",
    "TCPMSS",
    "CHECKSUM",
    "NOTRACK",
    "CT",
    "IDLETIMER",
    "LED",
];

/// Parses a whole `iptables-save` dump: `*table`, `:CHAIN POLICY [p:b]`, `-A CHAIN ...`, `COMMIT`.
/// The filter table's INPUT chain becomes a base chain on the `input` hook at priority 0.
pub fn parse(text: &str, origin: Origin, family: Family) -> Result<Ruleset, ParseError> {
    let mut rs = Ruleset::default();
    let mut table: Option<String> = None;
    // Chain name → index in `rs.chains`, for the current table (kube-proxy dumps hold thousands of chains).
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let err = |msg: String| ParseError::Line { line: n + 1, msg };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(t) = line.strip_prefix('*') {
            table = Some(t.trim().to_string());
            index.clear();
            continue;
        }
        if line == "COMMIT" {
            table = None;
            continue;
        }
        let Some(tbl) = table.clone() else {
            return Err(err(format!("{line:?} outside a *table ... COMMIT block")));
        };
        if let Some(decl) = line.strip_prefix(':') {
            let mut f = decl.split_whitespace();
            let name = f
                .next()
                .ok_or_else(|| err("chain declaration without a name".into()))?;
            let policy = f.next().unwrap_or("-");
            let base = match policy {
                "-" => None,
                "ACCEPT" | "DROP" => Some(Base {
                    hook: hook_of(&tbl, name),
                    priority: 0,
                    policy: if policy == "ACCEPT" {
                        Verdict::Accept
                    } else {
                        Verdict::Drop
                    },
                }),
                p => return Err(err(format!("chain {name}: unknown policy {p:?}"))),
            };
            index.insert(name.to_string(), rs.chains.len());
            rs.chains.push(Chain {
                origin,
                family,
                table: tbl,
                name: name.to_string(),
                base,
                rules: Vec::new(),
            });
            continue;
        }
        // `iptables-save -c` prefixes counters: `[12:3456] -A INPUT ...`.
        let body = if line.starts_with('[') {
            line.split_once(']').map_or(line, |(_, r)| r.trim_start())
        } else {
            line
        };
        let words = tokenize(body).map_err(err)?;
        if words.len() < 2 || (words[0].text != "-A" && words[0].text != "--append") {
            return Err(err(format!("expected `-A CHAIN ...`, found {body:?}")));
        }
        let chain_name = &words[1].text;
        let chain = index
            .get(chain_name)
            .map(|&i| &mut rs.chains[i])
            .ok_or_else(|| err(format!("rule for undeclared chain {chain_name}")))?;
        let (matches, action) = rule_meaning(&words[2..]).map_err(err)?;
        let position = chain.rules.len() + 1;
        chain.rules.push(Rule {
            position,
            handle: None,
            text: body.to_string(),
            matches,
            action,
        });
    }
    if table.is_some() {
        // iptables-restore refuses a table without COMMIT; a truncated dump is not a ruleset to trust.
        return Err(ParseError::Line {
            line: text.lines().count(),
            msg: "table not closed by COMMIT (truncated output?)".into(),
        });
    }
    Ok(rs)
}

/// The netfilter hook a built-in chain sits on (`filter INPUT` and `filter FORWARD` are walked by the evaluator).
fn hook_of(table: &str, chain: &str) -> String {
    match (table, chain) {
        ("filter", "INPUT") => "input".into(),
        ("filter", "FORWARD") => "forward".into(),
        (_, c) => format!("{}-{}", table, c.to_ascii_lowercase()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    quoted: bool,
}

/// Splits a rule line the way iptables-restore does: whitespace, with "double quotes" and backslash escapes.
fn tokenize(s: &str) -> Result<Vec<Word>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_q, mut quoted, mut any) = (false, false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    any = true;
                }
            }
            '"' => {
                in_q = !in_q;
                quoted = true;
                any = true;
            }
            c if c.is_whitespace() && !in_q => {
                if any {
                    out.push(Word {
                        text: std::mem::take(&mut cur),
                        quoted,
                    });
                }
                quoted = false;
                any = false;
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if in_q {
        return Err(format!("unterminated quote in {s:?}"));
    }
    if any {
        out.push(Word { text: cur, quoted });
    }
    Ok(out)
}

/// One option of a match module: `! --dport 22`.
struct Opt<'a> {
    neg: bool,
    name: &'a str,
    vals: Vec<&'a str>,
}

/// Turns the words after `-A CHAIN` into matches and an action.
fn rule_meaning(words: &[Word]) -> Result<(Vec<Match>, Action), String> {
    let mut matches = Vec::new();
    let mut action = Action::Continue;
    let mut proto: Option<u8> = None;
    let mut i = 0;
    let mut neg = false;
    let mut proto_word: Option<String> = None;
    while i < words.len() {
        let at = i;
        let w = &words[i];
        if !w.quoted && w.text == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let val = |k: usize| -> Result<&str, String> {
            words
                .get(k)
                .map(|w| w.text.as_str())
                .ok_or_else(|| format!("{} needs a value", w.text))
        };
        match w.text.as_str() {
            "-s" | "--source" | "-d" | "--destination" => {
                let any_of = val(i + 1)?
                    .split(',')
                    .map(|a| a.parse().map(AddrElem::Net))
                    .collect::<Result<Vec<_>, _>>()?;
                matches.push(if w.text.starts_with("-s") || w.text == "--source" {
                    Match::Source { neg, any_of }
                } else {
                    Match::Dest { neg, any_of }
                });
                i += 2;
            }
            "-i" | "--in-interface" => {
                matches.push(Match::InIface {
                    neg,
                    any_of: vec![val(i + 1)?.to_string()],
                });
                i += 2;
            }
            "-o" | "--out-interface" => {
                matches.push(Match::OutIface {
                    neg,
                    any_of: vec![val(i + 1)?.to_string()],
                });
                i += 2;
            }
            "-p" | "--protocol" => {
                let p = val(i + 1)?;
                if p == "all" || p == "0" {
                    if neg {
                        matches.push(Match::Proto {
                            neg: false,
                            any_of: vec![],
                        });
                    }
                } else {
                    let n = proto_number(p).ok_or_else(|| format!("unknown protocol {p:?}"))?;
                    if !neg {
                        proto = Some(n);
                        proto_word = Some(p.to_ascii_lowercase());
                    }
                    matches.push(Match::Proto {
                        neg,
                        any_of: vec![n],
                    });
                }
                i += 2;
            }
            "-f" | "--fragment" => {
                // The first packet of a connection is never a non-first fragment.
                matches.push(Match::Proto {
                    neg,
                    any_of: vec![],
                });
                i += 1;
            }
            "-m" | "--match" => {
                let module = val(i + 1)?.to_string();
                i = module_at(words, i + 2, &module, proto, i, &mut matches)?;
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let t = val(i + 1)?;
                let rest: Vec<&str> = words[i + 2..].iter().map(|w| w.text.as_str()).collect();
                action = target(t, w.text.starts_with("-g") || w.text == "--goto", &rest);
                break;
            }
            "-c" | "--set-counters" => i += 3,
            // `-p tcp --dport 22` without `-m tcp`: iptables-restore loads the protocol's match implicitly.
            o if o.starts_with("--") && !w.quoted && proto.is_some() => {
                let module = proto_word.clone().unwrap_or_default();
                let start = if neg { i - 1 } else { i };
                i = module_at(words, start, &module, proto, start, &mut matches)?;
            }
            other if w.quoted => {
                return Err(format!("quoted word {other:?} where an option belongs"));
            }
            other => return Err(format!("unknown option {other:?}")),
        }
        neg = false;
        // Every branch above consumes at least one word; a parser that stands still would never end.
        if i <= at {
            return Err(format!("option {:?} not understood", w.text));
        }
    }
    Ok((matches, action))
}

/// Collects a match module's options from `from` (up to the next `-m`, `-j` or core option) and adds its
/// matches; `text_from` is where the cited text starts. Returns the index after the options.
fn module_at(
    words: &[Word],
    from: usize,
    module: &str,
    proto: Option<u8>,
    text_from: usize,
    out: &mut Vec<Match>,
) -> Result<usize, String> {
    let is_flag = |w: &Word| !w.quoted && w.text.starts_with('-') && w.text.len() > 1;
    let mut j = from;
    let mut opts = Vec::new();
    while j < words.len() {
        let mut k = j;
        let mut oneg = false;
        if !words[k].quoted && words[k].text == "!" {
            oneg = true;
            k += 1;
        }
        let Some(ow) = words.get(k) else { break };
        if !ow.text.starts_with("--") || ow.quoted {
            break;
        }
        let mut vals = Vec::new();
        let mut v = k + 1;
        while v < words.len() && !(is_flag(&words[v]) || (!words[v].quoted && words[v].text == "!"))
        {
            vals.push(words[v].text.as_str());
            v += 1;
        }
        opts.push(Opt {
            neg: oneg,
            name: &ow.text,
            vals,
        });
        j = v;
    }
    let text = words[text_from..j]
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    module_matches(module, &opts, proto, &text, out)?;
    Ok(j)
}

fn target(t: &str, goto: bool, opts: &[&str]) -> Action {
    match t {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        "REJECT" => Action::Reject,
        "RETURN" => Action::Return,
        t if NON_TERMINATING.contains(&t) => Action::Continue,
        t if t.chars().all(|c| c.is_ascii_uppercase()) && !opts.is_empty()
            || is_extension_target(t) =>
        {
            Action::Unknown(format!("-j {t} {}", opts.join(" ")).trim().to_string())
        }
        t if goto => Action::Goto(t.to_string()),
        t => Action::Jump(t.to_string()),
    }
}

/// Targets provided by kernel extensions rather than user chains (a user chain is looked up; these never are).
fn is_extension_target(t: &str) -> bool {
    matches!(
        t,
        "NFQUEUE"
            | "QUEUE"
            | "DNAT"
            | "SNAT"
            | "MASQUERADE"
            | "REDIRECT"
            | "TPROXY"
            | "TEE"
            | "SYNPROXY"
            | "NETMAP"
    )
}

fn module_matches(
    module: &str,
    opts: &[Opt],
    proto: Option<u8>,
    text: &str,
    out: &mut Vec<Match>,
) -> Result<(), String> {
    let unknown = |out: &mut Vec<Match>| out.push(Match::Unknown(text.to_string()));
    match module {
        "comment" => {}
        "tcp" | "udp" | "sctp" | "udplite" => {
            let p = proto_number(module);
            for o in opts {
                match (o.name, o.vals.as_slice()) {
                    ("--dport" | "--destination-port", [v]) => out.push(Match::DPort {
                        neg: o.neg,
                        proto: p,
                        any_of: vec![port_range(v)?],
                    }),
                    ("--sport" | "--source-port", [v]) => out.push(Match::SPort {
                        neg: o.neg,
                        proto: p,
                        any_of: vec![port_range(v)?],
                    }),
                    ("--syn", []) => out.push(Match::TcpFlags {
                        neg: o.neg,
                        mask: 0x17,
                        comp: 0x02,
                    }),
                    ("--tcp-flags", [mask, comp]) => out.push(Match::TcpFlags {
                        neg: o.neg,
                        mask: tcp_flags(mask)?,
                        comp: tcp_flags(comp)?,
                    }),
                    _ => unknown(out),
                }
            }
        }
        "multiport" => {
            for o in opts {
                let list = || -> Result<Vec<(u16, u16)>, String> {
                    o.vals
                        .first()
                        .unwrap_or(&"")
                        .split(',')
                        .map(port_range)
                        .collect()
                };
                match o.name {
                    "--dports" | "--destination-ports" => out.push(Match::DPort {
                        neg: o.neg,
                        proto,
                        any_of: list()?,
                    }),
                    "--sports" | "--source-ports" => out.push(Match::SPort {
                        neg: o.neg,
                        proto,
                        any_of: list()?,
                    }),
                    _ => unknown(out),
                }
            }
        }
        "state" | "conntrack" => {
            for o in opts {
                match (o.name, o.vals.as_slice()) {
                    ("--state" | "--ctstate", [v]) => out.push(Match::CtState {
                        neg: o.neg,
                        // DNAT/SNAT in --ctstate are status bits, which a new connection to a host port lacks.
                        any_of: v.split(',').map(|s| s.to_ascii_lowercase()).collect(),
                    }),
                    ("--ctstatus", [v]) => out.push(Match::CtStatus {
                        neg: o.neg,
                        any_of: v.split(',').map(|s| s.to_ascii_lowercase()).collect(),
                    }),
                    _ => unknown(out),
                }
            }
        }
        "addrtype" => {
            for o in opts {
                let any_of = o
                    .vals
                    .first()
                    .unwrap_or(&"")
                    .split(',')
                    .map(str::to_string)
                    .collect();
                match o.name {
                    "--dst-type" => out.push(Match::DstType { neg: o.neg, any_of }),
                    "--src-type" => out.push(Match::SrcType { neg: o.neg, any_of }),
                    _ => unknown(out),
                }
            }
        }
        "mac" => match opts {
            [o] if o.name == "--mac-source" && o.vals.len() == 1 => out.push(Match::Sliver {
                neg: o.neg,
                what: text.to_string(),
            }),
            _ => unknown(out),
        },
        "iprange" => {
            for o in opts {
                let range = o.vals.first().and_then(|v| {
                    let (a, b) = v.split_once('-')?;
                    Some(AddrElem::Range(a.parse().ok()?, b.parse().ok()?))
                });
                match (o.name, range) {
                    ("--src-range", Some(r)) => out.push(Match::Source {
                        neg: o.neg,
                        any_of: vec![r],
                    }),
                    ("--dst-range", Some(r)) => out.push(Match::Dest {
                        neg: o.neg,
                        any_of: vec![r],
                    }),
                    _ => unknown(out),
                }
            }
        }
        "pkttype" => match opts {
            [o] if o.name == "--pkt-type" && o.vals.len() == 1 => out.push(Match::PktType {
                neg: o.neg,
                any_of: vec![o.vals[0].to_ascii_lowercase()],
            }),
            _ => unknown(out),
        },
        "mark" => match opts {
            [o] if o.name == "--mark" && o.vals.len() == 1 => {
                let (v, m) = o.vals[0]
                    .split_once('/')
                    .unwrap_or((o.vals[0], "0xffffffff"));
                let num = |s: &str| {
                    u32::from_str_radix(
                        s.trim_start_matches("0x"),
                        if s.starts_with("0x") { 16 } else { 10 },
                    )
                };
                match (num(v), num(m)) {
                    (Ok(value), Ok(mask)) => out.push(Match::Mark {
                        neg: o.neg,
                        value: value & mask,
                        mask,
                    }),
                    _ => unknown(out),
                }
            }
            _ => unknown(out),
        },
        // icmp type only matters for ICMP packets; the `-p icmp` before it already decides for others.
        "icmp" | "icmp6" | "icmpv6" if proto.is_some_and(|p| p == 1 || p == 58) => unknown(out),
        _ => unknown(out),
    }
    Ok(())
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("not a port or port range: {s:?}");
    let (a, b) = s.split_once(':').unwrap_or((s, s));
    let lo = if a.is_empty() {
        0
    } else {
        a.parse().map_err(|_| bad())?
    };
    let hi = if b.is_empty() {
        65535
    } else {
        b.parse().map_err(|_| bad())?
    };
    Ok((lo, hi))
}

fn tcp_flags(s: &str) -> Result<u8, String> {
    s.split(',').try_fold(0u8, |acc, f| {
        Ok(acc
            | match f {
                "FIN" => 1,
                "SYN" => 2,
                "RST" => 4,
                "PSH" => 8,
                "ACK" => 16,
                "URG" => 32,
                "ALL" => 63,
                "NONE" => 0,
                _ => return Err(format!("unknown TCP flag {f:?}")),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tables_policies_and_rules() {
        let t = "# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:MINE - [0:0]\n-A INPUT -s 192.168.0.0/16 -p tcp -m multiport --dports 6443,30000:32767 -j ACCEPT\n-A INPUT -s 10.0.0.0/8 -i weave -m comment --comment \"100 allow access to Kubernetes API Endpoint from network overlay\" -j ACCEPT\n-A INPUT ! -i lo -j MINE\n-A MINE -m limit --limit 3/min -j LOG --log-prefix \"x y\"\n-A MINE -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n";
        let rs = parse(t, Origin::IptablesNft, Family::Ip).unwrap();
        let input = &rs.chains[0];
        assert_eq!(input.base.as_ref().unwrap().hook, "input");
        assert_eq!(rs.chains[1].base.as_ref().unwrap().policy, Verdict::Drop);
        assert!(rs.chains[2].base.is_none());
        let r = &input.rules[0];
        assert_eq!(r.action, Action::Accept);
        assert_eq!(
            r.matches[2],
            Match::DPort {
                neg: false,
                proto: Some(6),
                any_of: vec![(6443, 6443), (30000, 32767)]
            }
        );
        assert_eq!(input.rules[1].matches.len(), 2, "comment is not a match");
        assert_eq!(
            input.rules[2].matches[0],
            Match::InIface {
                neg: true,
                any_of: vec!["lo".into()]
            }
        );
        assert_eq!(input.rules[2].action, Action::Jump("MINE".into()));
        assert_eq!(rs.chains[2].rules[0].action, Action::Continue);
        assert_eq!(rs.chains[2].rules[1].position, 2);
        assert_eq!(
            rs.chains[2].rules[1].text,
            "-A MINE -j REJECT --reject-with icmp-host-prohibited"
        );
    }

    #[test]
    fn unknown_modules_and_targets_are_kept_as_unknown() {
        let t = "*filter\n:INPUT DROP [0:0]\n-A INPUT -m set --match-set allowed src -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j NFQUEUE --queue-num 1\nCOMMIT\n";
        let rs = parse(t, Origin::IptablesLegacy, Family::Ip).unwrap();
        assert_eq!(
            rs.chains[0].rules[0].matches,
            [Match::Unknown("-m set --match-set allowed src".into())]
        );
        assert_eq!(
            rs.chains[0].rules[1].action,
            Action::Unknown("-j NFQUEUE --queue-num 1".into())
        );
    }

    #[test]
    fn rejects_garbage_with_the_line() {
        let e = parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A NOPE -j ACCEPT\nCOMMIT\n",
            Origin::IptablesNft,
            Family::Ip,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "line 3: rule for undeclared chain NOPE");
        let e = parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n",
            Origin::IptablesNft,
            Family::Ip,
        )
        .unwrap_err();
        assert!(e.to_string().contains("COMMIT"), "{e}");
        assert!(parse("-A INPUT -j ACCEPT\n", Origin::IptablesNft, Family::Ip).is_err());
        assert!(
            parse(
                "*filter\n:INPUT ACCEPT\n-A INPUT --bogus -j ACCEPT\nCOMMIT\n",
                Origin::IptablesNft,
                Family::Ip
            )
            .is_err()
        );
        assert!(
            parse("", Origin::IptablesNft, Family::Ip)
                .unwrap()
                .chains
                .is_empty()
        );
    }
}
