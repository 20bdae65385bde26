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

/// Renders the whole catalog; markdown is the README's check table, byte for byte.
pub fn render_list(format: Format, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, catalog())?;
            writeln!(out)
        }
        Format::Markdown | Format::Junit => {
            writeln!(out, "| id | checks | severity | roles | fix |")?;
            writeln!(out, "|---|---|---|---|---|")?;
            for e in catalog() {
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
            for e in catalog() {
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
pub fn render_explain(e: &Entry, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{} — {}\n", e.id, e.title)?;
    writeln!(out, "Symptom:\n  {}\n", e.symptom.trim())?;
    writeln!(out, "Why it matters:\n  {}\n", e.why.trim())?;
    writeln!(
        out,
        "Severity: {}    Roles: {}    Automatic fix: {}\n",
        e.severity.as_str(),
        roles(e),
        if e.fix { "yes (k8sdoctor fix)" } else { "no" }
    )?;
    writeln!(out, "Remediation:\n  {}", e.remediation.trim())?;
    if !e.references.is_empty() {
        writeln!(out, "\nReferences:")?;
        for r in &e.references {
            writeln!(out, "  {r}")?;
        }
    }
    Ok(())
}
