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
/// is the manual's page docs/checks.md, byte for byte.
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
        Format::Markdown | Format::Junit => render_markdown(&entries, out),
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

/// The heading anchor GitHub gives `` ## `id` ``: lowercase, dots dropped.
fn anchor(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_')
        .collect::<String>()
        .to_lowercase()
}

/// Catalog prose as markdown text: `[`, `]` and `<` outside code spans are escaped (a symptom such
/// as `[ERROR Swap]: ...` would otherwise be read as a link definition), and the TOML's hard line
/// breaks are kept as soft ones.
fn prose(text: &str) -> String {
    let text = text
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n");
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                return part.to_string();
            }
            part.replace('[', "\\[")
                .replace(']', "\\]")
                .replace('<', "&lt;")
        })
        .collect::<Vec<_>>()
        .join("`")
}

/// docs/checks.md: a summary table, then per check what it looks for, the symptom, the fix and
/// kubeadm's name for it.
fn render_markdown(entries: &[&Entry], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "# Checks\n")?;
    writeln!(
        out,
        "<!-- Generated: `k8sdoctor list -o markdown > docs/checks.md`. A test fails when it differs. -->\n"
    )?;
    writeln!(
        out,
        "Every check in the catalog (`checks/*.toml`, built into the binary). `k8sdoctor explain ID` \
         prints one entry in the terminal; `--only`/`--skip` take the ids and kubeadm's preflight \
         names. The `join.*` steps run only under `k8sdoctor join-check` ([join-check.md](join-check.md)), \
         `manifests.api-version` only under `k8sdoctor manifests` ([manifests.md](manifests.md)); \
         fixes are described in [fix.md](fix.md).\n"
    )?;
    writeln!(out, "| id | checks | severity | roles | fix | kubeadm |")?;
    writeln!(out, "|---|---|---|---|---|---|")?;
    for e in entries {
        writeln!(
            out,
            "| [`{}`](#{}) | {} | {} | {} | {} | {} |",
            e.id,
            anchor(&e.id),
            crate::report::markdown_cell(&e.title),
            e.severity.as_str(),
            roles(e),
            if e.fix { "yes" } else { "" },
            e.kubeadm
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    for e in entries {
        writeln!(out, "\n## `{}`\n", e.id)?;
        writeln!(out, "**Looks for:** {}.\n", prose(&e.title))?;
        writeln!(out, "{}\n", prose(&e.why))?;
        writeln!(out, "**Symptom:** {}\n", prose(&e.symptom))?;
        let fix = if e.fix {
            format!(" (automatic: `k8sdoctor fix {}`)", e.id)
        } else {
            String::new()
        };
        writeln!(out, "**Fix:** {}{fix}\n", prose(&e.remediation))?;
        let kubeadm = if e.kubeadm.is_empty() {
            "none (kubeadm's preflight does not check this)".to_string()
        } else {
            e.kubeadm
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(out, "**kubeadm preflight name:** {kubeadm}\n")?;
        write!(
            out,
            "Severity `{}`, roles: {}.",
            e.severity.as_str(),
            roles(e)
        )?;
        if !e.references.is_empty() {
            let refs: Vec<String> = e.references.iter().map(|r| format!("<{r}>")).collect();
            write!(out, " References: {}.", refs.join(", "))?;
        }
        writeln!(out)?;
    }
    Ok(())
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
