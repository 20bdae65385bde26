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
    fn replacing_keeps_the_line_ending_and_appending_ends_the_last_line() {
        assert_eq!(replace_line("a\r\nb\r\nc", 2, "B"), "a\r\nB\r\nc");
        assert_eq!(replace_line("a\nb", 2, "B"), "a\nB");
        assert_eq!(append_line("a", "b"), "a\nb\n");
        assert_eq!(append_line("", "b"), "b\n");
        assert_eq!(append_line("a\n", "b"), "a\nb\n");
    }
}
