//! Line-preserving text edits: every line a fix does not name is kept byte for byte, line endings included.

/// The lines of a text with their endings (`\n`, `\r\n` or none on the last line).
fn lines(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

/// A line split into its body and its ending.
fn split_eol(line: &str) -> (&str, &str) {
    let body = line.trim_end_matches(['\n', '\r']);
    (body, &line[body.len()..])
}

/// Puts `#` in front of each named line (1-based); the rest of the text is unchanged.
pub fn comment_out(text: &str, numbers: &[usize]) -> String {
    lines(text)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if numbers.contains(&(i + 1)) {
                format!("#{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Replaces the body of one line (1-based), keeping its ending.
pub fn replace_line(text: &str, number: usize, body: &str) -> String {
    lines(text)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == number {
                format!("{body}{}", split_eol(l).1)
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Appends a line, first ending an unterminated last line.
pub fn append_line(text: &str, body: &str) -> String {
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(body);
    s.push('\n');
    s
}

/// Inserts `rule` (an `-A CHAIN ...` line) into an iptables-save file, in the `*table` block, before the line
/// `before` (the deciding rule's text) when it is there, else before the `position`-th rule of the chain, else
/// after the chain's last rule or before the block's `COMMIT`. `None` when the table is absent or the rule is
/// already in it (applying twice adds it once).
pub fn insert_saved_rule(
    text: &str,
    table: &str,
    chain: &str,
    before: Option<&str>,
    position: usize,
    rule: &str,
) -> Option<String> {
    let ls = lines(text);
    let prefix = format!("-A {chain} ");
    let mut in_table = false;
    let (mut by_text, mut by_pos, mut last, mut commit) = (None, None, None, None);
    let mut seen = 0;
    for (i, l) in ls.iter().enumerate() {
        let t = l.trim();
        if let Some(name) = t.strip_prefix('*') {
            in_table = name.trim() == table;
            continue;
        }
        if !in_table {
            continue;
        }
        if t == "COMMIT" {
            commit = Some(i);
            in_table = false;
        } else if t == rule {
            return None;
        } else if t.starts_with(&prefix) {
            seen += 1;
            last = Some(i + 1);
            if seen == position {
                by_pos = Some(i);
            }
            if by_text.is_none() && before == Some(t) {
                by_text = Some(i);
            }
        }
    }
    let at = by_text.or(by_pos).or(last).or(commit)?;
    let mut out: String = ls[..at].concat();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(rule);
    out.push('\n');
    out.push_str(&ls[at..].concat());
    Some(out)
}

/// Inserts `rule` (nft statements) into a saved nftables ruleset, in `table FAMILY TABLE { chain CHAIN { .. } }`,
/// before the line `before` (the deciding rule) when it is there, else before the `position`-th rule of the
/// chain, else at the chain's end, with that line's indentation. `None` when the chain is not in this file or
/// already holds the rule; rules written across lines or tables defined in included files are not found.
pub fn insert_nft_rule(
    text: &str,
    family: &str,
    table: &str,
    chain: &str,
    before: Option<&str>,
    position: usize,
    rule: &str,
) -> Option<String> {
    let ls = lines(text);
    let words = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    // Depth of `{` nesting, and the depths at which our table and chain blocks were opened.
    let (mut depth, mut in_table, mut in_chain) = (0usize, None, None);
    let (mut by_text, mut by_pos, mut end, mut seen) = (None, None, None, 0);
    for (i, l) in ls.iter().enumerate() {
        let t = l.split('#').next().unwrap_or("").trim();
        let w = words(t);
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        if in_chain.is_some() && opens == 0 && closes == 0 && !t.is_empty() {
            let decl = w.first().is_some_and(|f| f == "type" || f == "policy");
            if t == rule {
                return None;
            }
            if !decl {
                seen += 1;
                if seen == position {
                    by_pos = Some(i);
                }
                if by_text.is_none() && before == Some(t) {
                    by_text = Some(i);
                }
            }
        }
        let matches_table = w.len() >= 3 && w[0] == "table" && w[1] == family && w[2] == table;
        let table_default = w.len() >= 2
            && w[0] == "table"
            && family == "ip"
            && w[1] == table
            && w.get(2).is_some_and(|x| x == "{");
        if in_table.is_none() && (matches_table || table_default) && opens > 0 {
            in_table = Some(depth + 1);
        } else if in_table == Some(depth)
            && in_chain.is_none()
            && w.len() >= 2
            && w[0] == "chain"
            && w[1] == chain
            && opens > 0
        {
            in_chain = Some(depth + 1);
        }
        depth += opens;
        depth = depth.saturating_sub(closes);
        if let Some(c) = in_chain
            && depth < c
        {
            end = Some(i);
            in_chain = None;
            if by_text.is_some() || by_pos.is_some() {
                break;
            }
        }
        if in_table.is_some_and(|d| depth < d) {
            in_table = None;
        }
    }
    let at = by_text.or(by_pos).or(end)?;
    let indent: String = ls[at]
        .chars()
        .take_while(|c| c.is_whitespace() && *c != '\n')
        .collect();
    let indent = if by_text.or(by_pos).is_some() {
        indent
    } else {
        format!("{indent}\t")
    };
    let mut out: String = ls[..at].concat();
    out.push_str(&format!("{indent}{rule}\n"));
    out.push_str(&ls[at..].concat());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commenting_keeps_every_other_byte() {
        let t = "# /etc/fstab\r\n\tUUID=1 /  xfs defaults 0 0\n/dev/sda2   none\tswap  sw 0 0\n\n  /swapfile none swap sw";
        let out = comment_out(t, &[3, 5]);
        assert_eq!(
            out,
            "# /etc/fstab\r\n\tUUID=1 /  xfs defaults 0 0\n#/dev/sda2   none\tswap  sw 0 0\n\n#  /swapfile none swap sw"
        );
    }

    const CENTOS7: &str = "# sample configuration for iptables service\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p icmp -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n";
    const OPEN: &str = "-A INPUT -s 10.0.0.0/24 -p tcp -m tcp --dport 6443 -j ACCEPT";

    #[test]
    fn saved_rules_go_before_the_deciding_rule_once() {
        let reject = Some("-A INPUT -j REJECT --reject-with icmp-host-prohibited");
        let out = insert_saved_rule(CENTOS7, "filter", "INPUT", reject, 5, OPEN).unwrap();
        let expect = CENTOS7.replace("-A INPUT -j REJECT", &format!("{OPEN}\n-A INPUT -j REJECT"));
        assert_eq!(out, expect);
        assert_eq!(
            insert_saved_rule(&out, "filter", "INPUT", reject, 5, OPEN),
            None
        );
        // The text differs from the file's spelling: the position decides.
        assert_eq!(
            insert_saved_rule(
                CENTOS7,
                "filter",
                "INPUT",
                Some("-A INPUT -j REJECT"),
                5,
                OPEN
            )
            .unwrap(),
            expect
        );
        // A policy decision: after the chain's last rule.
        let drop = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            insert_saved_rule(drop, "filter", "INPUT", Some(":INPUT DROP"), 2, OPEN).unwrap(),
            format!("*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n{OPEN}\nCOMMIT\n")
        );
        let empty = "*filter\n:INPUT DROP [0:0]\nCOMMIT";
        assert_eq!(
            insert_saved_rule(empty, "filter", "INPUT", None, 1, OPEN).unwrap(),
            format!("*filter\n:INPUT DROP [0:0]\n{OPEN}\nCOMMIT")
        );
        assert_eq!(
            insert_saved_rule(CENTOS7, "mangle", "INPUT", None, 1, OPEN),
            None
        );
    }

    #[test]
    fn nft_rules_go_before_the_deciding_rule_in_their_chain_once() {
        let conf = "#!/usr/sbin/nft -f\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established,related accept\n\t\tiifname \"lo\" accept # loopback\n\t\treject with icmpx type admin-prohibited\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority 0;\n\t\treject\n\t}\n}\n";
        let rule = "ip saddr 10.0.0.0/24 tcp dport 10250 accept";
        let reject = Some("reject with icmpx type admin-prohibited");
        let out = insert_nft_rule(conf, "inet", "filter", "input", reject, 3, rule).unwrap();
        assert_eq!(
            out,
            conf.replace("\t\treject with", &format!("\t\t{rule}\n\t\treject with"))
        );
        assert_eq!(
            insert_nft_rule(&out, "inet", "filter", "input", reject, 3, rule),
            None
        );
        // By position when the text differs; at the chain's end for a policy decision.
        assert_eq!(
            insert_nft_rule(conf, "inet", "filter", "input", Some("reject"), 3, rule).unwrap(),
            out
        );
        let end = insert_nft_rule(
            conf,
            "inet",
            "filter",
            "input",
            Some("policy drop"),
            9,
            rule,
        )
        .unwrap();
        assert!(
            end.contains(&format!(
                "\t\treject with icmpx type admin-prohibited\n\t\t{rule}\n\t}}\n\tchain forward"
            )),
            "{end}"
        );
        assert_eq!(
            insert_nft_rule(conf, "ip", "filter", "input", reject, 3, rule),
            None
        );
        assert_eq!(
            insert_nft_rule(conf, "inet", "filter", "output", reject, 3, rule),
            None
        );
    }

    #[test]
    fn replacing_keeps_the_line_ending_and_appending_ends_the_last_line() {
        assert_eq!(replace_line("a\r\nb\r\nc", 2, "B"), "a\r\nB\r\nc");
        assert_eq!(replace_line("a\nb", 2, "B"), "a\nB");
        assert_eq!(append_line("a", "b"), "a\nb\n");
        assert_eq!(append_line("", "b"), "b\n");
        assert_eq!(append_line("a\n", "b"), "a\nb\n");
    }
}
