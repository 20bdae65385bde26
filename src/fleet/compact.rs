//! The compact node report: what a check pod writes to its termination message (at most 4096
//! bytes, the kubelet's limit), so a node's verdicts reach the CLI through the pod status when its
//! log cannot be read (the API server cannot reach the kubelet on tcp/10250). Encoding and
//! decoding are pure; the format is docs/fleet-compact-report.md.
//!
//! Every check's id and status and the summary come first; messages follow, worst result first,
//! as many as fit. A report too large for even the ids drops results (passes first) and says how
//! many; the text is always whole and self-checking (an `end` line counts what precedes it), so a
//! cut or foreign message decodes to an error, never to wrong data.

use crate::{
    core::{catalog, status::Status},
    mask::mask_secrets,
    report::{CheckResult, HostInfo, Report, SCHEMA_VERSION, Summary, Tool},
};

use super::report::{NodeOutcome, NodeState};

/// The kubelet keeps at most this many bytes of a termination message.
pub const LIMIT: usize = 4096;
/// The first line: the format and its version.
const MAGIC: &str = "k8sdoctor-compact 1";
/// A message keeps at most this many characters (room for the others).
const MESSAGE_MAX: usize = 400;
/// Bytes kept free for the `omitted` and `end` lines.
const TAIL_ROOM: usize = 48;

/// Why a termination message is not a compact report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a compact report: {0}")]
pub struct DecodeError(String);

/// One result as the compact report carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactResult {
    pub id: String,
    pub status: Status,
    /// The message, possibly cut (ending in `…`), or none when it did not fit.
    pub message: Option<String>,
}

/// A decoded compact report.
#[derive(Debug, Clone)]
pub struct Compact {
    pub hostname: String,
    pub role: String,
    pub root: String,
    pub summary: Summary,
    pub results: Vec<CompactResult>,
    /// Results left out because even their ids did not fit.
    pub omitted: usize,
}

fn letter(s: Status) -> char {
    match s {
        Status::Pass => 'P',
        Status::Warn => 'W',
        Status::Fail => 'F',
        Status::Skip => 'S',
        Status::Error => 'E',
    }
}

fn from_letter(c: &str) -> Option<Status> {
    Some(match c {
        "P" => Status::Pass,
        "W" => Status::Warn,
        "F" => Status::Fail,
        "S" => Status::Skip,
        "E" => Status::Error,
        _ => return None,
    })
}

/// A token with no whitespace or control characters (`_` instead), `-` when empty.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "-".into() } else { t }
}

/// Free text on one line: control characters and line breaks become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// `s` cut to at most `max` bytes at a character boundary, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The group and the rest of an id: `firewall.kubelet-port` → (`firewall`, `kubelet-port`).
fn split_id(id: &str) -> (&str, &str) {
    id.rsplit_once('.').unwrap_or(("", id))
}

/// Worst first: what an operator needs first when only some of it fits.
fn priority(s: Status) -> u8 {
    match s {
        Status::Error => 0,
        Status::Fail => 1,
        Status::Warn => 2,
        Status::Skip => 3,
        Status::Pass => 4,
    }
}

/// The result lines of `results` (sorted by id, grouped by the id's prefix).
fn result_lines(results: &mut [&CheckResult]) -> String {
    results.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = String::new();
    let mut group: Option<&str> = None;
    for r in results.iter() {
        let (g, rest) = split_id(&r.id);
        if group != Some(g) {
            if g.is_empty() {
                out.push_str("g\n");
            } else {
                out.push_str(&format!("g {}\n", token(g)));
            }
            group = Some(g);
        }
        out.push_str(&format!("{} {}\n", letter(r.status), token(rest)));
    }
    out
}

/// The compact form of a node report, at most [`LIMIT`] bytes.
pub fn encode(report: &Report) -> String {
    let mut out = format!(
        "{MAGIC}\nhost {} {} {}\nsum {} {} {} {} {}\n",
        token(&report.host.hostname),
        token(&report.host.role),
        token(&report.host.root),
        report.summary.pass,
        report.summary.warn,
        report.summary.fail,
        report.summary.skip,
        report.summary.error,
    );
    let budget = LIMIT - TAIL_ROOM;
    let mut chosen: Vec<&CheckResult> = report.results.iter().collect();
    let mut lines = result_lines(&mut chosen);
    if out.len() + lines.len() > budget {
        // Not even every id fits: keep the worst results, each costed ungrouped (an upper bound).
        let mut by_need: Vec<&CheckResult> = report.results.iter().collect();
        by_need.sort_by_key(|r| priority(r.status));
        let mut room = budget - out.len();
        chosen.clear();
        for r in by_need {
            let cost = r.id.len() + 2 + 3 + 1 + 1; // "g " group line + "X " + newline, at most
            if cost > room {
                break;
            }
            room -= cost;
            chosen.push(r);
        }
        lines = result_lines(&mut chosen);
    }
    out.push_str(&lines);
    let kept = chosen.len();
    let omitted = report.results.len() - kept;
    if omitted > 0 {
        out.push_str(&format!("omitted {omitted}\n"));
    }
    chosen.sort_by_key(|r| priority(r.status));
    let mut messages = 0;
    for r in chosen {
        let text = one_line(&mask_secrets(&r.message));
        if text.is_empty() {
            continue;
        }
        let head = format!("m {} ", token(&r.id));
        let room = budget.saturating_sub(out.len() + head.len() + 1);
        if room < 24 {
            break;
        }
        out.push_str(&head);
        out.push_str(&cut(&text, room.min(MESSAGE_MAX)));
        out.push('\n');
        messages += 1;
    }
    out.push_str(&format!("end {kept} {messages}\n"));
    debug_assert!(out.len() <= LIMIT);
    out
}

/// Reads a compact report back; anything else (a cut text, a log tail) is an error.
pub fn decode(text: &str) -> Result<Compact, DecodeError> {
    let bad = |m: String| DecodeError(m);
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(bad(format!("the first line is not \"{MAGIC}\"")));
    }
    let host: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("host "))
        .map(|l| l.split(' ').collect())
        .unwrap_or_default();
    let [hostname, role, root] = host[..] else {
        return Err(bad("no host line".into()));
    };
    let sum: Vec<usize> = lines
        .next()
        .and_then(|l| l.strip_prefix("sum "))
        .map(|l| l.split(' ').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let [pass, warn, fail, skip, error] = sum[..] else {
        return Err(bad("no summary line".into()));
    };
    let mut c = Compact {
        hostname: hostname.into(),
        role: role.into(),
        root: root.into(),
        summary: Summary {
            pass,
            warn,
            fail,
            skip,
            error,
        },
        results: Vec::new(),
        omitted: 0,
    };
    let mut group: Option<String> = None;
    let mut messages = 0usize;
    let mut ended = false;
    for l in lines {
        if ended {
            return Err(bad("text after the end line".into()));
        }
        let (word, rest) = l.split_once(' ').unwrap_or((l, ""));
        match word {
            "g" => group = Some(rest.to_string()),
            "omitted" => {
                c.omitted = rest.parse().map_err(|_| bad(format!("bad line: {l}")))?;
            }
            "m" => {
                let (id, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                let r = c
                    .results
                    .iter_mut()
                    .find(|r| r.id == id)
                    .ok_or_else(|| bad(format!("a message for an unlisted result {id}")))?;
                r.message = Some(msg.to_string());
                messages += 1;
            }
            "end" => {
                let want = format!("{} {messages}", c.results.len());
                if rest != want {
                    return Err(bad(format!(
                        "the end line says {rest}, the text has {want}"
                    )));
                }
                ended = true;
            }
            w => {
                let status = from_letter(w).ok_or_else(|| bad(format!("bad line: {l}")))?;
                let g = group
                    .as_deref()
                    .ok_or_else(|| bad(format!("a result before any group: {l}")))?;
                let id = if g.is_empty() {
                    rest.to_string()
                } else {
                    format!("{g}.{rest}")
                };
                c.results.push(CompactResult {
                    id,
                    status,
                    message: None,
                });
            }
        }
    }
    if !ended {
        return Err(bad("no end line (the text was cut)".into()));
    }
    let counted = Summary::of(&c.to_report().results);
    let n = |s: &Summary| (s.pass, s.warn, s.fail, s.skip, s.error);
    if c.omitted == 0 && n(&counted) != n(&c.summary) {
        return Err(bad("the summary does not match the results".into()));
    }
    Ok(c)
}

impl Compact {
    /// The node report it stands for: ids, statuses, the summary, the messages that fit, titles
    /// from the catalog; no evidence.
    pub fn to_report(&self) -> Report {
        let results = self
            .results
            .iter()
            .map(|r| {
                let entry = catalog::find(&r.id);
                CheckResult {
                    id: r.id.clone(),
                    title: entry.map(|e| e.title.clone()).unwrap_or_default(),
                    status: r.status,
                    message: r.message.clone().unwrap_or_else(|| {
                        "(the compact report had no room for this message)".into()
                    }),
                    evidence: Vec::new(),
                    remediation: entry
                        .filter(|_| !matches!(r.status, Status::Pass | Status::Skip))
                        .map(|e| e.remediation.clone()),
                    fix_available: entry.is_some_and(|e| e.fix),
                    duration_ms: 0,
                    subject: None,
                    replacement: None,
                }
            })
            .collect();
        Report {
            schema_version: SCHEMA_VERSION.into(),
            tool: Tool::default(),
            started_at: String::new(),
            duration_ms: 0,
            host: HostInfo {
                hostname: self.hostname.clone(),
                root: self.root.clone(),
                role: self.role.clone(),
                ..Default::default()
            },
            cluster: None,
            summary: self.summary,
            results,
            manifests: None,
        }
    }
}

/// What the termination message of an exited container said, and where its kubelet is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Termination {
    /// `status.containerStatuses[].state.terminated.message`.
    pub message: Option<String>,
    /// `status.hostIP`: the kubelet the API server proxies log reads to.
    pub host_ip: Option<String>,
}

/// A node whose pod log could not be read (`log_error`): reported from its compact report when
/// the termination message holds one, saying that only the compact report arrived and why;
/// otherwise in error, with both reasons.
pub fn fallback(node: String, log_error: &str, term: &Termination) -> NodeOutcome {
    let why = log_failure(log_error, term);
    let message = term.message.as_deref().unwrap_or("");
    match decode(message) {
        Ok(c) => NodeOutcome {
            name: node,
            state: NodeState::Reported,
            reason: Some(format!(
                "only the compact report arrived (the pod's termination message: statuses, \
                 messages cut, no evidence{}); the log could not be read: {why}",
                if c.omitted > 0 {
                    format!(", {} results left out", c.omitted)
                } else {
                    String::new()
                }
            )),
            report: Some(c.to_report()),
        },
        Err(e) => NodeOutcome {
            name: node,
            state: NodeState::Error,
            reason: Some(if message.trim().is_empty() {
                format!("{why}; the termination message is empty")
            } else {
                format!(
                    "{why}; the termination message is {e}: {}",
                    cut(&one_line(message), 300)
                )
            }),
            report: None,
        },
    }
}

/// The multicast probe's result as its termination message: JSON marked `compact_probe`, with the
/// pairs this probe received first (the merge prefers a receiver's own view), each pair's numbers
/// and verdict, its cause cut to code and message; pairs that do not fit are counted in
/// `omitted`. At most [`LIMIT`] bytes.
pub fn encode_probe(result: &serde_json::Value) -> String {
    use serde_json::{Value, json};
    let local = result["local"].clone();
    let mut pairs: Vec<&Value> = result["pairs"].as_array().into_iter().flatten().collect();
    pairs.sort_by_key(|p| p["receiver"] != local);
    let keep = |p: &Value| {
        let cause = (!p["cause"].is_null()).then(|| {
            let msg = mask_secrets(p["cause"]["message"].as_str().unwrap_or(""));
            json!({"code": p["cause"]["code"], "message": cut(&one_line(&msg), 200)})
        });
        let mut kept = json!({"sender": p["sender"], "receiver": p["receiver"], "sent": p["sent"],
            "received": p["received"], "loss_pct": p["loss_pct"], "duplicates": p["duplicates"],
            "reordered": p["reordered"], "latency_p50_ms": p["latency_p50_ms"],
            "verdict": p["verdict"], "cause": cause});
        // Only a receiver that had heard nothing from the sender says so (the merge asks).
        if p["heard"] == false {
            kept["heard"] = json!(false);
        }
        kept
    };
    let total = pairs.len();
    let mut out = json!({"compact_probe": 1, "local": local, "pass": result["pass"],
        "duration_ms": result["duration_ms"], "listened_ms": result["listened_ms"],
        "pairs": [], "omitted": total});
    for (n, p) in pairs.into_iter().enumerate() {
        let mut next = out.clone();
        next["pairs"]
            .as_array_mut()
            .expect("an array")
            .push(keep(p));
        next["omitted"] = json!(total - n - 1);
        if next.to_string().len() > LIMIT {
            break;
        }
        out = next;
    }
    out.to_string()
}

/// A probe result from a termination message written by [`encode_probe`]; anything else is None.
pub fn decode_probe(text: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (v["compact_probe"] == 1 && v["pairs"].is_array()).then_some(v)
}

/// Why a node's probe result came from its termination message (the log read failed).
pub fn probe_fallback_reason(log_error: &str, term: &Termination, omitted: u64) -> String {
    format!(
        "only the compact probe result arrived (the pod's termination message: numbers, verdicts \
         and causes cut{}); the log could not be read: {}",
        if omitted > 0 {
            format!(", {omitted} pairs left out")
        } else {
            String::new()
        },
        log_failure(log_error, term)
    )
}

/// The log error, in words that name the kubelet port when that is why it failed.
fn log_failure(log_error: &str, term: &Termination) -> String {
    let ip = term.host_ip.as_deref().unwrap_or("the node");
    // The API server's kubelet proxy words an unreachable kubelet as a dial error to :10250.
    let dial = [
        "dial tcp",
        "i/o timeout",
        "connection refused",
        "no route to host",
    ];
    if log_error.contains(":10250") && dial.iter().any(|w| log_error.contains(w)) {
        format!(
            "the API server cannot reach the kubelet on {ip}:10250: {log_error} — this is itself the \
             firewall.kubelet-port pitfall: allow tcp/10250 from the control plane to every node"
        )
    } else {
        log_error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: Status, message: &str) -> CheckResult {
        CheckResult {
            id: id.into(),
            title: String::new(),
            status,
            message: message.into(),
            evidence: vec!["e".into()],
            remediation: None,
            fix_available: false,
            duration_ms: 3,
            subject: None,
            replacement: None,
        }
    }

    fn report(results: Vec<CheckResult>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION.into(),
            tool: Tool::default(),
            started_at: "2026-12-07T21:00:00Z".into(),
            duration_ms: 5,
            host: HostInfo {
                hostname: "node 1".into(),
                root: "/host".into(),
                role: "worker".into(),
                ..Default::default()
            },
            cluster: None,
            summary: Summary::of(&results),
            results,
            manifests: None,
        }
    }

    /// Every check of the catalog with a long message, each status in turn.
    fn catalog_report(extra_ids: usize, message_len: usize) -> Report {
        let statuses = [
            Status::Pass,
            Status::Fail,
            Status::Warn,
            Status::Skip,
            Status::Error,
        ];
        let msg = "x".repeat(message_len);
        let mut results: Vec<CheckResult> = catalog::catalog()
            .iter()
            .enumerate()
            .map(|(i, e)| result(&e.id, statuses[i % 5], &msg))
            .collect();
        for i in 0..extra_ids {
            let id = format!("policy.flow.site-rule-number-{i:03}");
            results.push(result(&id, statuses[i % 5], &msg));
        }
        report(results)
    }

    fn sum(s: &Summary) -> [usize; 5] {
        [s.pass, s.warn, s.fail, s.skip, s.error]
    }

    fn statuses(r: &Report) -> Vec<(String, Status)> {
        let mut v: Vec<_> = r.results.iter().map(|r| (r.id.clone(), r.status)).collect();
        v.sort();
        v
    }

    #[test]
    fn a_small_report_round_trips_with_every_message() {
        let r = report(vec![
            result(
                "firewall.kubelet-port",
                Status::Fail,
                "tcp/10250 is rejected\tby rule 3",
            ),
            result("swap.active", Status::Pass, "no swap"),
            result(
                "dns.loopback-nameserver",
                Status::Warn,
                "nameserver 127.0.0.53",
            ),
        ]);
        let text = encode(&r);
        let c = decode(&text).unwrap();
        assert_eq!(c.omitted, 0);
        assert_eq!(c.hostname, "node_1");
        assert_eq!(sum(&c.summary), sum(&r.summary));
        let back = c.to_report();
        assert_eq!(statuses(&back), statuses(&r));
        let fw = back
            .results
            .iter()
            .find(|x| x.id == "firewall.kubelet-port")
            .unwrap();
        assert_eq!(fw.message, "tcp/10250 is rejected by rule 3");
        assert!(!fw.title.is_empty(), "the title comes from the catalog");
        assert!(text.starts_with("k8sdoctor-compact 1\nhost node_1 worker /host\nsum 1 1 1 0 0\n"));
    }

    #[test]
    fn the_whole_catalog_and_many_policy_ids_stay_under_the_limit_with_every_status() {
        for extra in [0, 50, 100] {
            let r = catalog_report(extra, 2000);
            let text = encode(&r);
            assert!(text.len() <= LIMIT, "{extra}: {} bytes", text.len());
            let c = decode(&text).unwrap();
            assert_eq!(c.omitted, 0, "{extra} extra ids: every id and status fits");
            assert_eq!(statuses(&c.to_report()), statuses(&r));
            assert_eq!(sum(&c.summary), sum(&r.summary));
            // Messages go worst first: the first message line is an error's.
            let first = text.lines().find(|l| l.starts_with("m ")).unwrap();
            let id = first.split(' ').nth(1).unwrap();
            let st = r.results.iter().find(|x| x.id == id).unwrap().status;
            assert_eq!(st, Status::Error, "{first}");
        }
    }

    #[test]
    fn a_report_too_large_for_its_ids_degrades_to_the_worst_and_says_how_many_are_left_out() {
        let r = catalog_report(400, 100);
        let text = encode(&r);
        assert!(text.len() <= LIMIT, "{} bytes", text.len());
        let c = decode(&text).unwrap();
        assert!(c.omitted > 0);
        assert_eq!(c.results.len() + c.omitted, r.results.len());
        // What is kept is true: every status as the node reported it, the worst kept first.
        for kept in &c.results {
            let orig = r.results.iter().find(|x| x.id == kept.id).unwrap();
            assert_eq!(kept.status, orig.status, "{}", kept.id);
        }
        let worst_kept = c
            .results
            .iter()
            .filter(|x| x.status == Status::Error)
            .count();
        let worst_all = r
            .results
            .iter()
            .filter(|x| x.status == Status::Error)
            .count();
        assert_eq!(worst_kept, worst_all);
        assert_eq!(
            sum(&c.summary),
            sum(&r.summary),
            "the summary still counts every result"
        );
    }

    #[test]
    fn anything_but_a_whole_compact_report_is_an_error_never_data() {
        let text = encode(&catalog_report(10, 300));
        // Cut anywhere (a kubelet keeps the last 4096 bytes of a larger file; a copy may be cut).
        for n in [0, 10, text.len() / 3, text.len() / 2, text.len() - 2] {
            let mut end = n;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            assert!(decode(&text[..end]).is_err(), "cut at {n}");
        }
        let mut half = text.len() / 2;
        while !text.is_char_boundary(half) {
            half += 1;
        }
        assert!(decode(&text[half..]).is_err());
        let tail = "Error: cannot read /host/etc/os-release\npanicked at src/main.rs:3";
        assert!(decode(tail).is_err());
        let forged = text.replacen("\nF ", "\nP ", 1);
        assert!(
            decode(&forged).is_err(),
            "a changed status breaks the summary"
        );
        let extra = format!("{text}F smuggled\n");
        assert!(decode(&extra).is_err());
    }

    #[test]
    fn a_probe_result_keeps_its_own_receptions_first_under_the_limit() {
        let pair = |s: u32, r: u32| {
            serde_json::json!({"sender": format!("10.244.{s}.2"), "receiver": format!("10.244.{r}.2"),
                "sent": 100, "received": 0, "loss_pct": 100.0, "duplicates": 0, "reordered": 0,
                "latency_p50_ms": null, "rtt_ms": 1.5, "verdict": "fail",
                "cause": {"code": "firewall", "message": "x".repeat(5000), "evidence": ["e"]}})
        };
        let mut pairs = Vec::new();
        for a in 2..41 {
            pairs.push(pair(1, a));
            let mut into_me = pair(a, 1);
            // The receiver had heard nothing from its first sender when it reported.
            into_me["heard"] = serde_json::json!(a != 2);
            pairs.push(into_me);
        }
        let v = serde_json::json!({"local": "10.244.1.2", "pass": false, "pairs": pairs,
            "duration_ms": 5200, "listened_ms": 4100});
        let text = encode_probe(&v);
        assert!(text.len() <= LIMIT, "{}", text.len());
        let back = decode_probe(&text).unwrap();
        let kept = back["pairs"].as_array().unwrap();
        assert!(!kept.is_empty());
        assert!(
            kept.iter().all(|p| p["receiver"] == "10.244.1.2"),
            "own receptions first"
        );
        assert_eq!(kept.len() as u64 + back["omitted"].as_u64().unwrap(), 78);
        assert_eq!(kept[0]["cause"]["code"], "firewall");
        assert!(kept[0]["cause"]["message"].as_str().unwrap().len() <= 200);
        // What the merge needs to place the probe's run in time, and whom it never heard.
        assert_eq!(
            (back["duration_ms"].as_u64(), back["listened_ms"].as_u64()),
            (Some(5200), Some(4100))
        );
        let unheard: Vec<&serde_json::Value> =
            kept.iter().filter(|p| p.get("heard").is_some()).collect();
        assert_eq!(unheard.len(), 1, "{kept:?}");
        assert_eq!(
            (&unheard[0]["sender"], &unheard[0]["heard"]),
            (&serde_json::json!("10.244.2.2"), &serde_json::json!(false))
        );
        assert!(decode_probe(&text[..text.len() - 1]).is_none());
        assert!(decode_probe("{\"pairs\": []}").is_none(), "not marked");
    }

    #[test]
    fn a_log_read_that_fails_falls_back_to_the_compact_report_naming_the_kubelet_port() {
        let r = report(vec![result(
            "firewall.kubelet-port",
            Status::Fail,
            "rejected",
        )]);
        let term = Termination {
            message: Some(encode(&r)),
            host_ip: Some("192.168.77.20".into()),
        };
        let err = "reading the pod log failed: 500 InternalError: Get \"https://192.168.77.20:10250/containerLogs/k8sdoctor/p/doctor\": dial tcp 192.168.77.20:10250: i/o timeout";
        let n = fallback("w1".into(), err, &term);
        assert_eq!(n.state, NodeState::Reported);
        let why = n.reason.unwrap();
        assert!(why.contains("only the compact report arrived"), "{why}");
        assert!(
            why.contains("the API server cannot reach the kubelet on 192.168.77.20:10250"),
            "{why}"
        );
        assert!(why.contains("firewall.kubelet-port pitfall"), "{why}");
        assert_eq!(statuses(&n.report.unwrap()), statuses(&r));
        // No compact report: an error that keeps both reasons.
        let tail = Termination {
            message: Some("thread 'main' panicked".into()),
            host_ip: None,
        };
        let n = fallback(
            "w2".into(),
            "reading the pod log failed: 403 Forbidden",
            &tail,
        );
        assert_eq!(n.state, NodeState::Error);
        let why = n.reason.unwrap();
        assert!(
            why.contains("403 Forbidden") && why.contains("panicked"),
            "{why}"
        );
        assert!(!why.contains("10250"), "{why}");
    }
}
