//! The catalog as people read it: `list` in table, JSON or markdown, and `explain ID`.

use std::io::Write;

use crate::{
    core::catalog::{Entry, catalog},
    core::config::Format,
    report::status_table,
};

fn roles(e: &Entry) -> String {
    e.roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the whole catalog, then `extra` (the entries of `--policy` checks); markdown without extras
/// is the README's check table, byte for byte.
pub fn render_list(
    format: Format,
    color: bool,
    extra: &[Entry],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let entries: Vec<&Entry> = catalog().iter().chain(extra).collect();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &entries)?;
            writeln!(out)
        }
        Format::Markdown | Format::Junit => {
            writeln!(out, "| id | checks | severity | roles | fix |")?;
            writeln!(out, "|---|---|---|---|---|")?;
            for e in &entries {
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    e.id,
                    crate::report::markdown_cell(&e.title),
                    e.severity.as_str(),
                    roles(e),
                    if e.fix { "yes" } else { "" }
                )?;
            }
            Ok(())
        }
        Format::Table => {
            let mut t = status_table(&["id", "checks", "severity", "roles", "fix"], color);
            for e in &entries {
                t.add_row(vec![
                    e.id.clone(),
                    e.title.clone(),
                    e.severity.as_str().into(),
                    roles(e),
                    if e.fix { "yes".into() } else { String::new() },
                ]);
            }
            writeln!(out, "{t}")
        }
    }
}

/// Prints one entry: the pitfall, why it matters, the fix.
/// Writes a heading and its text, every line of the text indented the same two spaces (catalog
/// prose is hard-wrapped over several lines).
fn paragraph(out: &mut dyn Write, heading: &str, text: &str) -> std::io::Result<()> {
    writeln!(out, "{heading}:")?;
    for line in text.trim().lines() {
        match line.trim_end() {
            "" => writeln!(out)?,
            l => writeln!(out, "  {}", l.trim_start())?,
        }
    }
    Ok(())
}

pub fn render_explain(e: &Entry, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{} — {}\n", e.id, e.title)?;
    paragraph(out, "Symptom", &e.symptom)?;
    writeln!(out)?;
    paragraph(out, "Why it matters", &e.why)?;
    writeln!(
        out,
        "\nSeverity: {}    Roles: {}    Automatic fix: {}\n",
        e.severity.as_str(),
        roles(e),
        if e.fix { "yes (k8sdoctor fix)" } else { "no" }
    )?;
    paragraph(out, "Remediation", &e.remediation)?;
    writeln!(out)?;
    let kubeadm = if e.kubeadm.is_empty() {
        "none (kubeadm does not check this)".to_string()
    } else {
        format!(
            "{} (--only/--skip accept these names too)",
            e.kubeadm.join(", ")
        )
    };
    paragraph(out, "kubeadm preflight equivalent", &kubeadm)?;
    if !e.references.is_empty() {
        writeln!(out)?;
        paragraph(out, "References", &e.references.join("\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of every paragraph of every entry is indented the same, whatever its TOML layout.
    #[test]
    fn explain_indents_every_paragraph_line_alike() {
        for e in catalog() {
            let mut out = Vec::new();
            render_explain(e, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            let mut lines = text.lines();
            assert!(lines.next().unwrap().starts_with(&e.id));
            for l in lines.filter(|l| !l.is_empty()) {
                let heading = l.ends_with(':') || l.starts_with("Severity: ");
                assert!(
                    heading || (l.starts_with("  ") && !l.starts_with("   ")),
                    "{}: {l:?}",
                    e.id
                );
            }
            assert!(text.contains("Why it matters:\n  "), "{}", e.id);
        }
    }
}
