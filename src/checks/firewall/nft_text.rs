//! The nft text syntax of `nftables.conf` (tables, chains, sets, rules, `define`) turned into nft JSON objects,
//! so saved and live rulesets share one converter ([`super::nft::from_objects`]). Statements outside the
//! understood subset are kept verbatim as `{"unparsed": text}` and make their rule `unknown`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{
    model::Ruleset,
    nft::{self, NftError},
};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Semi,
    Newline,
    Comma,
    Colon,
}

/// Tokens with the 1-based line each starts on (for "line N: ..." errors).
struct Lexed {
    toks: Vec<Tok>,
    lines: Vec<usize>,
}

fn lex(s: &str) -> Result<Lexed, String> {
    let mut out = Lexed {
        toks: Vec::new(),
        lines: Vec::new(),
    };
    let mut line = 1;
    let push = |out: &mut Lexed, t: Tok, line: usize| {
        out.toks.push(t);
        out.lines.push(line);
    };
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            '#' => {
                while it.peek().is_some_and(|&c| c != '\n') {
                    it.next();
                }
            }
            '\n' => {
                it.next();
                push(&mut out, Tok::Newline, line);
                line += 1;
            }
            '\\' => {
                // Line continuation.
                it.next();
                if it.peek() == Some(&'\n') {
                    it.next();
                    line += 1;
                }
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '{' | '}' | ';' | ',' => {
                it.next();
                let t = match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ';' => Tok::Semi,
                    _ => Tok::Comma,
                };
                push(&mut out, t, line);
            }
            '"' => {
                it.next();
                let start = line;
                let mut w = String::new();
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some(c) => {
                            line += usize::from(c == '\n');
                            w.push(c)
                        }
                        None => return Err(format!("line {start}: unterminated string")),
                    }
                }
                push(&mut out, Tok::Str(w), start);
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_whitespace() || "{};,\"#".contains(c) {
                        break;
                    }
                    w.push(c);
                    it.next();
                }
                // `a : b` in maps; keep IPv6 addresses (which contain colons) whole.
                let t = if w == ":" { Tok::Colon } else { Tok::Word(w) };
                push(&mut out, t, line);
            }
        }
    }
    Ok(out)
}

/// Parses nft text (includes already expanded) into the model.
pub fn parse(text: &str) -> Result<Ruleset, NftError> {
    let lexed = lex(text).map_err(NftError::Invalid)?;
    let lexed = substitute_defines(lexed)?;
    let mut p = P {
        t: lexed.toks,
        lines: lexed.lines,
        i: 0,
        objects: vec![],
    };
    p.file()?;
    nft::from_objects(p.objects)
}

/// The most tokens `define` substitution may produce: variables used many times cannot blow up memory.
const MAX_TOKENS: usize = 8_000_000;

fn substitute_defines(l: Lexed) -> Result<Lexed, NftError> {
    let Lexed { toks, lines } = l;
    let bad = |i: usize, msg: String| NftError::Invalid(format!("line {}: {msg}", lines[i]));
    let mut defs: HashMap<String, Vec<Tok>> = HashMap::new();
    let mut out = Lexed {
        toks: Vec::new(),
        lines: Vec::new(),
    };
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Word("define".into())
            && (i == 0 || toks[i - 1] == Tok::Newline || toks[i - 1] == Tok::Semi)
        {
            let Some(Tok::Word(name)) = toks.get(i + 1) else {
                return Err(bad(i, "define without a name".into()));
            };
            let mut j = i + 3;
            let mut depth = 0i64;
            let mut val = Vec::new();
            while j < toks.len() && !(depth == 0 && matches!(toks[j], Tok::Newline | Tok::Semi)) {
                match toks[j] {
                    Tok::Open => depth += 1,
                    Tok::Close => depth -= 1,
                    _ => {}
                }
                if toks[j] != Tok::Newline {
                    val.push(toks[j].clone());
                }
                j += 1;
            }
            defs.insert(name.clone(), val);
            i = j;
            continue;
        }
        match &toks[i] {
            Tok::Word(w) if w.starts_with('$') => match defs.get(&w[1..]) {
                Some(v) => {
                    out.toks.extend(v.iter().cloned());
                    out.lines.extend(std::iter::repeat_n(lines[i], v.len()));
                }
                None => return Err(bad(i, format!("undefined variable {w}"))),
            },
            t => {
                out.toks.push(t.clone());
                out.lines.push(lines[i]);
            }
        }
        if out.toks.len() > MAX_TOKENS {
            return Err(bad(
                i,
                "variables expand to more than 8 million words".into(),
            ));
        }
        i += 1;
    }
    Ok(out)
}

struct P {
    t: Vec<Tok>,
    lines: Vec<usize>,
    i: usize,
    objects: Vec<HashMap<String, Value>>,
}

fn obj(k: &str, v: Value) -> HashMap<String, Value> {
    HashMap::from([(k.to_string(), v)])
}

const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];

impl P {
    /// An error at the current token's line.
    fn err(&self, msg: impl Into<String>) -> NftError {
        self.err_at(self.i, msg)
    }
    fn err_at(&self, i: usize, msg: impl Into<String>) -> NftError {
        let line = self
            .lines
            .get(i.min(self.lines.len().saturating_sub(1)))
            .copied()
            .unwrap_or(1);
        NftError::Invalid(format!("line {line}: {}", msg.into()))
    }
    /// `line N: `xyz ...` not understood`, for a line that is no nft command, object or rule.
    fn not_understood(&mut self, what: &str) -> NftError {
        let at = self.i;
        let toks = self.line();
        let mut text = render(&toks);
        if text.len() > 60 {
            let cut = (0..=60)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str(" ...");
        }
        self.err_at(at, format!("{what} `{text}` not understood"))
    }
    fn peek(&self) -> Option<&Tok> {
        self.t.get(self.i)
    }
    fn word(&mut self) -> Result<String, NftError> {
        match self.t.get(self.i).cloned() {
            Some(Tok::Word(w)) | Some(Tok::Str(w)) => {
                self.i += 1;
                Ok(w)
            }
            t => Err(self.err(format!("expected a name, found {t:?}"))),
        }
    }
    fn skip_seps(&mut self) {
        while matches!(self.peek(), Some(Tok::Newline | Tok::Semi)) {
            self.i += 1;
        }
    }
    fn expect(&mut self, t: Tok) -> Result<(), NftError> {
        if self.peek() == Some(&t) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(format!("expected {t:?}, found {:?}", self.peek())))
        }
    }
    /// Tokens up to the end of the line (or `;`), with braces kept balanced.
    fn line(&mut self) -> Vec<Tok> {
        let mut depth = 0;
        let mut out = Vec::new();
        while let Some(t) = self.peek().cloned() {
            match t {
                Tok::Newline | Tok::Semi if depth == 0 => break,
                Tok::Close if depth == 0 => break,
                Tok::Open => depth += 1,
                Tok::Close => depth -= 1,
                _ => {}
            }
            self.i += 1;
            if t != Tok::Newline {
                out.push(t);
            }
        }
        out
    }
    fn family_and_name(&mut self) -> Result<(String, String), NftError> {
        let a = self.word()?;
        if FAMILIES.contains(&a.as_str())
            && matches!(self.peek(), Some(Tok::Word(_)) | Some(Tok::Str(_)))
        {
            Ok((a, self.word()?))
        } else {
            Ok(("ip".into(), a))
        }
    }

    fn file(&mut self) -> Result<(), NftError> {
        loop {
            self.skip_seps();
            let Some(t) = self.peek().cloned() else {
                return Ok(());
            };
            let Tok::Word(w) = t else {
                return Err(self.err(format!("unexpected {t:?} at top level")));
            };
            match w.as_str() {
                "table" => {
                    self.i += 1;
                    let (family, name) = self.family_and_name()?;
                    self.expect(Tok::Open)?;
                    self.table_body(&family, &name)?;
                }
                "add" | "create" | "insert" => {
                    self.i += 1;
                    let what = self.word()?;
                    match what.as_str() {
                        "table" => {
                            let _ = self.family_and_name()?;
                            let _ = self.line();
                        }
                        "chain" => {
                            let (family, table) = self.family_and_name()?;
                            let name = self.word()?;
                            let spec = if self.peek() == Some(&Tok::Open) {
                                self.i += 1;
                                let s = self.chain_spec()?;
                                self.expect(Tok::Close)?;
                                s
                            } else {
                                vec![]
                            };
                            self.push_chain(&family, &table, &name, &spec);
                        }
                        "rule" => {
                            let (family, table) = self.family_and_name()?;
                            let chain = self.word()?;
                            let toks = self.line();
                            self.push_rule(&family, &table, &chain, &toks, w == "insert");
                        }
                        _ => {
                            let _ = self.line();
                        }
                    }
                }
                // `flush ruleset`, `include` left over, `delete ...`: nothing to evaluate.
                "flush" | "include" | "delete" | "destroy" | "list" | "reset" | "rename"
                | "replace" | "monitor" | "describe" | "export" | "import" => {
                    let _ = self.line();
                    if self.peek() == Some(&Tok::Close) {
                        return Err(self.err("unbalanced }"));
                    }
                }
                _ => return Err(self.not_understood("command")),
            }
        }
    }

    fn table_body(&mut self, family: &str, table: &str) -> Result<(), NftError> {
        let opened = self.i.saturating_sub(1);
        loop {
            self.skip_seps();
            match self.peek().cloned() {
                Some(Tok::Close) => {
                    self.i += 1;
                    return Ok(());
                }
                None => {
                    return Err(self.err_at(opened, format!("table {family} {table}: missing }}")));
                }
                Some(Tok::Word(w)) if w == "chain" => {
                    let chain_at = self.i;
                    self.i += 1;
                    let name = self.word()?;
                    self.expect(Tok::Open)?;
                    let spec = self.chain_spec()?;
                    self.push_chain(family, table, &name, &spec);
                    loop {
                        self.skip_seps();
                        match self.peek() {
                            Some(Tok::Close) => {
                                self.i += 1;
                                break;
                            }
                            None => {
                                return Err(
                                    self.err_at(chain_at, format!("chain {name}: missing }}"))
                                );
                            }
                            _ => {
                                let toks = self.line();
                                if !toks.is_empty() {
                                    self.push_rule(family, table, &name, &toks, false);
                                }
                            }
                        }
                    }
                }
                Some(Tok::Word(w)) if w == "set" || w == "map" => {
                    let set_at = self.i;
                    self.i += 1;
                    let name = self.word()?;
                    self.expect(Tok::Open)?;
                    let mut elem = Vec::new();
                    loop {
                        self.skip_seps();
                        match self.peek().cloned() {
                            Some(Tok::Close) => {
                                self.i += 1;
                                break;
                            }
                            None => {
                                return Err(self.err_at(set_at, format!("set {name}: missing }}")));
                            }
                            Some(Tok::Word(k)) if k == "elements" => {
                                let toks = self.line();
                                // elements = { ... }
                                let body = toks
                                    .iter()
                                    .skip_while(|t| **t != Tok::Open)
                                    .cloned()
                                    .collect::<Vec<_>>();
                                let (v, _) = value(&body, 0);
                                if let Some(Value::Object(o)) = v
                                    && let Some(Value::Array(a)) = o.get("set")
                                {
                                    elem = a.clone();
                                }
                            }
                            _ => {
                                let _ = self.line();
                            }
                        }
                    }
                    self.objects.push(obj(
                        w.as_str(),
                        json!({"family": family, "table": table, "name": name, "elem": elem}),
                    ));
                }
                // flags, comment, stateful objects, flowtables ...: skip the line or block.
                Some(Tok::Word(w))
                    if matches!(
                        w.as_str(),
                        "flags"
                            | "comment"
                            | "counter"
                            | "quota"
                            | "limit"
                            | "ct"
                            | "flowtable"
                            | "secmark"
                            | "synproxy"
                            | "tunnel"
                    ) =>
                {
                    let _ = self.line();
                    if self.peek() == Some(&Tok::Open) {
                        self.skip_block();
                    }
                }
                Some(_) => return Err(self.not_understood(&format!("in table {family} {table}:"))),
            }
        }
    }

    fn skip_block(&mut self) {
        let mut depth = 0;
        while let Some(t) = self.peek().cloned() {
            self.i += 1;
            match t {
                Tok::Open => depth += 1,
                Tok::Close => {
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Leading `type filter hook input priority 0; policy drop;` lines of a chain block.
    fn chain_spec(&mut self) -> Result<Vec<Vec<Tok>>, NftError> {
        let mut spec = Vec::new();
        loop {
            self.skip_seps();
            match self.peek() {
                Some(Tok::Word(w))
                    if matches!(
                        w.as_str(),
                        "type" | "policy" | "comment" | "flags" | "devices" | "device"
                    ) =>
                {
                    spec.push(self.line());
                }
                _ => return Ok(spec),
            }
        }
    }

    fn push_chain(&mut self, family: &str, table: &str, name: &str, spec: &[Vec<Tok>]) {
        let mut c = json!({"family": family, "table": table, "name": name});
        for line in spec {
            let w: Vec<String> = line
                .iter()
                .filter_map(|t| match t {
                    Tok::Word(w) | Tok::Str(w) => Some(w.clone()),
                    _ => None,
                })
                .collect();
            match w.first().map(String::as_str) {
                Some("type") => {
                    c["type"] = json!(w.get(1));
                    if let Some(h) = w.iter().position(|x| x == "hook") {
                        c["hook"] = json!(w.get(h + 1));
                    }
                    if let Some(p) = w.iter().position(|x| x == "priority") {
                        c["prio"] = json!(w[p + 1..].join(" "));
                    }
                }
                Some("policy") => c["policy"] = json!(w.get(1)),
                _ => {}
            }
        }
        self.objects.push(obj("chain", c));
    }

    fn push_rule(&mut self, family: &str, table: &str, chain: &str, toks: &[Tok], insert: bool) {
        let mut comment = None;
        let expr = statements(toks, &mut comment);
        let mut r = json!({"family": family, "table": table, "chain": chain, "expr": expr, "text": render(toks)});
        if let Some(c) = comment {
            r["comment"] = json!(c);
        }
        let rule = obj("rule", r);
        if insert {
            // `insert rule` puts it first in its chain: after the chain object, before its other rules.
            let at = self
                .objects
                .iter()
                .position(|o| {
                    o.get("rule")
                        .is_some_and(|r| r["chain"] == chain && r["table"] == table)
                })
                .unwrap_or(self.objects.len());
            self.objects.insert(at, rule);
        } else {
            self.objects.push(rule);
        }
    }
}

fn w(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    }
}

/// Words that start a statement, so an unparsed statement ends before them.
const STARTS: &[&str] = &[
    "ip", "ip6", "tcp", "udp", "sctp", "th", "udplite", "meta", "iifname", "iif", "ct", "counter",
    "log", "accept", "drop", "reject", "return", "continue", "jump", "goto", "comment", "limit",
    "fib", "oifname", "oif", "ether",
];

/// One rule's tokens into nft JSON statements.
fn statements(t: &[Tok], comment: &mut Option<String>) -> Vec<Value> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let start = i;
        let parsed = statement(t, &mut i, comment);
        match parsed {
            Some(Some(v)) => out.push(v),
            Some(None) => {}
            None => {
                i = start + 1;
                while i < t.len() && !w(t.get(i)).is_some_and(|x| STARTS.contains(&x)) {
                    i += 1;
                }
                out.push(json!({"unparsed": render(&t[start..i])}));
            }
        }
    }
    out
}

fn render(t: &[Tok]) -> String {
    t.iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Open => "{".into(),
            Tok::Close => "}".into(),
            Tok::Semi => ";".into(),
            Tok::Newline => "".into(),
            Tok::Comma => ",".into(),
            Tok::Colon => ":".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" , ", ", ")
}

/// Parses one statement at `*i`: `Some(Some(json))`, `Some(None)` for a statement with no effect on the
/// model (comment), `None` when not understood.
fn statement(t: &[Tok], i: &mut usize, comment: &mut Option<String>) -> Option<Option<Value>> {
    let first = w(t.get(*i))?;
    let next = w(t.get(*i + 1));
    let simple = |k: &str| json!({ k: Value::Null });
    match first {
        "accept" | "drop" | "return" | "continue" => {
            *i += 1;
            return Some(Some(simple(first)));
        }
        "reject" => {
            *i += 1;
            // `reject with icmpx type admin-prohibited`, `reject with tcp reset`.
            while *i < t.len() && !w(t.get(*i)).is_some_and(|x| STARTS.contains(&x) && x != "tcp") {
                *i += 1;
            }
            return Some(Some(simple("reject")));
        }
        "jump" | "goto" => {
            let target = match t.get(*i + 1)? {
                Tok::Word(x) | Tok::Str(x) => x.clone(),
                _ => return None,
            };
            *i += 2;
            return Some(Some(json!({ first: {"target": target} })));
        }
        "counter" => {
            *i += 1;
            while matches!(w(t.get(*i)), Some("packets" | "bytes")) {
                *i += 2;
            }
            return Some(Some(json!({"counter": Value::Null})));
        }
        "log" => {
            *i += 1;
            let mut prefix = None;
            while let Some(k) = w(t.get(*i)) {
                match k {
                    "prefix" => {
                        if let Some(Tok::Str(s) | Tok::Word(s)) = t.get(*i + 1) {
                            prefix = Some(s.clone());
                        }
                        *i += 2;
                    }
                    "level" | "group" | "snaplen" | "queue-threshold" => *i += 2,
                    "flags" => {
                        *i += 2;
                        while t.get(*i) == Some(&Tok::Comma) {
                            *i += 2;
                        }
                    }
                    _ => break,
                }
            }
            return Some(Some(json!({"log": {"prefix": prefix}})));
        }
        "comment" => {
            if let Some(Tok::Str(s) | Tok::Word(s)) = t.get(*i + 1) {
                *comment = Some(s.clone());
            }
            *i += 2;
            return Some(None);
        }
        _ => {}
    }
    let (left, used) = match (first, next) {
        ("ip" | "ip6", Some(f @ ("saddr" | "daddr" | "protocol" | "nexthdr"))) => {
            (json!({"payload": {"protocol": first, "field": f}}), 2)
        }
        ("tcp" | "udp" | "sctp" | "th" | "udplite", Some(f @ ("dport" | "sport"))) => {
            (json!({"payload": {"protocol": first, "field": f}}), 2)
        }
        // Other header fields of a transport protocol (`icmpv6 type nd-neighbor-advert`): modelled as that
        // protocol plus an unknown test.
        ("icmp" | "icmpv6" | "udp" | "sctp" | "udplite", Some(f))
            if !STARTS.contains(&f) && !matches!(f, "{" | "==" | "!=") =>
        {
            (json!({"payload": {"protocol": first, "field": f}}), 2)
        }
        (
            "meta",
            Some(
                k @ ("iifname" | "iif" | "oifname" | "oif" | "l4proto" | "nfproto" | "protocol"
                | "pkttype" | "mark"),
            ),
        ) => (json!({"meta": {"key": k}}), 2),
        ("iifname" | "iif" | "oifname" | "oif" | "pkttype" | "mark", _) => {
            (json!({"meta": {"key": first}}), 1)
        }
        ("ether", Some("saddr")) => (
            json!({"payload": {"protocol": "ether", "field": "saddr"}}),
            2,
        ),
        ("ct", Some(k @ ("state" | "status"))) => (json!({"ct": {"key": k}}), 2),
        ("fib", Some("daddr")) if w(t.get(*i + 2)) == Some("type") => {
            (json!({"fib": {"flags": ["daddr"], "result": "type"}}), 3)
        }
        ("fib", Some("daddr"))
            if w(t.get(*i + 2)) == Some(".") && w(t.get(*i + 4)) == Some("type") =>
        {
            (
                json!({"fib": {"flags": ["daddr", "iif"], "result": "type"}}),
                5,
            )
        }
        _ => return None,
    };
    let mut j = *i + used;
    if w(t.get(j)) == Some("vmap") {
        let (data, n) = map_value(t, j + 1)?;
        *i = j + 1 + n;
        return Some(Some(json!({"vmap": {"key": left, "data": data}})));
    }
    let op = match w(t.get(j)) {
        Some("!=" | "ne") => {
            j += 1;
            "!="
        }
        Some("==" | "eq") => {
            j += 1;
            "=="
        }
        Some(o @ ("<" | "<=" | ">" | ">=")) => {
            j += 1;
            o
        }
        Some("lt") | Some("gt") | Some("le") | Some("ge") => return None,
        _ => "==",
    };
    let (right, n) = value(t, j);
    let right = right?;
    *i = j + n;
    Some(Some(
        json!({"match": {"op": op, "left": left, "right": right}}),
    ))
}

/// A right-hand side: `{ a, b-c, d/8 }`, `a,b` (flags), `@set`, or one value. Returns the value and tokens used.
fn value(t: &[Tok], at: usize) -> (Option<Value>, usize) {
    match t.get(at) {
        Some(Tok::Open) => {
            let mut els = Vec::new();
            let mut j = at + 1;
            while let Some(tok) = t.get(j) {
                match tok {
                    Tok::Close => return (Some(json!({ "set": els })), j + 1 - at),
                    Tok::Comma => {}
                    Tok::Word(x) | Tok::Str(x) => els.push(scalar(x)),
                    _ => return (None, 0),
                }
                j += 1;
            }
            (None, 0)
        }
        Some(Tok::Word(x)) | Some(Tok::Str(x)) => {
            let mut vals = vec![scalar(x)];
            let mut j = at + 1;
            while t.get(j) == Some(&Tok::Comma) {
                match t.get(j + 1) {
                    Some(Tok::Word(y)) => vals.push(scalar(y)),
                    _ => break,
                }
                j += 2;
            }
            if vals.len() == 1 {
                (vals.pop(), 1)
            } else {
                (Some(Value::Array(vals)), j - at)
            }
        }
        _ => (None, 0),
    }
}

/// `{ established : accept, invalid : drop }` (colons may be glued to the key: `established:`).
fn map_value(t: &[Tok], at: usize) -> Option<(Value, usize)> {
    if let Some(Tok::Word(x)) = t.get(at) {
        return x.starts_with('@').then(|| (json!(x), 1));
    }
    if t.get(at) != Some(&Tok::Open) {
        return None;
    }
    let mut pairs = Vec::new();
    let mut j = at + 1;
    loop {
        match t.get(j)? {
            Tok::Close => return Some((json!({ "set": pairs }), j + 1 - at)),
            Tok::Comma => j += 1,
            Tok::Word(k) => {
                let (key, mut n) = match k.strip_suffix(':') {
                    Some(k) => (k.to_string(), 1),
                    None if t.get(j + 1) == Some(&Tok::Colon) => (k.clone(), 2),
                    None => return None,
                };
                let verdict = w(t.get(j + n))?;
                let v = match verdict {
                    "jump" | "goto" => {
                        let target = w(t.get(j + n + 1))?;
                        n += 1;
                        json!({ verdict: {"target": target} })
                    }
                    v => json!({ v: Value::Null }),
                };
                pairs.push(json!([scalar(&key), v]));
                j += n + 1;
            }
            _ => return None,
        }
    }
}

/// A scalar as nft JSON prints it: numbers, `{"prefix"}`, `{"range"}`, else a string.
fn scalar(x: &str) -> Value {
    if let Ok(n) = x.parse::<u64>() {
        return json!(n);
    }
    if let Some((a, l)) = x.split_once('/')
        && let (Ok(_), Ok(len)) = (a.parse::<std::net::IpAddr>(), l.parse::<u8>())
    {
        return json!({"prefix": {"addr": a, "len": len}});
    }
    if let Some((a, b)) = x.split_once('-') {
        let ports = a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok();
        let addrs = a.parse::<std::net::IpAddr>().is_ok() && b.parse::<std::net::IpAddr>().is_ok();
        if ports {
            return json!({"range": [a.parse::<u64>().unwrap_or(0), b.parse::<u64>().unwrap_or(0)]});
        }
        if addrs {
            return json!({"range": [a, b]});
        }
    }
    json!(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::firewall::model::{Action, Match, Verdict};

    #[test]
    fn statements_outside_the_subset_stay_verbatim_and_unknown() {
        let rs = parse("table ip t {\n  chain c {\n    type filter hook input priority 0; policy drop;\n    tcp flags & (syn | ack) == syn limit rate 10/second accept\n    ip saddr @ok goto allow # trailing comment\n  }\n  set ok { type ipv4_addr; flags interval; elements = { 10.0.0.0/8, 192.168.1.1-192.168.1.9 } }\n  chain allow { udp dport 53 accept }\n}\nadd rule ip t allow tcp dport { 80, 443 } counter accept\n").unwrap();
        let c = &rs.chains[0];
        assert_eq!(c.base.as_ref().unwrap().policy, Verdict::Drop);
        let r = &c.rules[0];
        assert!(
            matches!(&r.matches[0], Match::Unknown(t) if t.contains("flags")),
            "{:?}",
            r.matches
        );
        assert_eq!(r.action, Action::Accept);
        let r = &c.rules[1];
        assert_eq!(r.action, Action::Goto("allow".into()));
        assert!(
            matches!(&r.matches[1], Match::Source { any_of, .. } if any_of.len() == 2),
            "{:?}",
            r.matches
        );
        assert_eq!(
            rs.chains[1].rules.len(),
            2,
            "the add rule line joins the chain"
        );
        assert_eq!(
            rs.chains[1].rules[1].text,
            "tcp dport { 80, 443 } counter accept"
        );
    }

    #[test]
    fn broken_text_is_an_error_not_a_panic() {
        for bad in [
            "table inet x {\n chain y {\n",
            "table inet x { chain y { tcp dport \"22 } }",
            "}",
            "define X = 1\ntable ip t { chain c { tcp dport $Y accept } }",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
