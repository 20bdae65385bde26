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

    #[test]
    fn replacing_keeps_the_line_ending_and_appending_ends_the_last_line() {
        assert_eq!(replace_line("a\r\nb\r\nc", 2, "B"), "a\r\nB\r\nc");
        assert_eq!(replace_line("a\nb", 2, "B"), "a\nB");
        assert_eq!(append_line("a", "b"), "a\nb\n");
        assert_eq!(append_line("", "b"), "b\n");
        assert_eq!(append_line("a\n", "b"), "a\nb\n");
    }
}
