//! Markdown rendering for tickets: a summary line and a table of results.

use std::io::Write;

use super::Report;

/// Escapes text for one markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

pub(super) fn render(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    match &report.manifests {
        Some(m) => {
            writeln!(
                out,
                "## k8sdoctor manifests: Kubernetes {}\n",
                m.target_version
            )?;
            writeln!(
                out,
                "Target from {}, {} input(s), {}; {}.\n",
                m.target_from, m.inputs, report.started_at, report.summary
            )?;
        }
        None => {
            writeln!(out, "## k8sdoctor report: {}\n", report.host.hostname)?;
            writeln!(
                out,
                "Role `{}`, root `{}`, {}; {}.\n",
                report.host.role, report.host.root, report.started_at, report.summary
            )?;
        }
    }
    writeln!(out, "| status | check | message | evidence | remediation |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for r in &report.results {
        // A manifests result names its object: file:line, kind and name.
        let check = match &r.subject {
            Some(s) => format!(
                "`{}` {}:{} {} {}",
                r.id,
                cell(&s.file),
                s.line,
                s.kind.as_deref().unwrap_or(""),
                cell(s.name.as_deref().unwrap_or(""))
            ),
            None => format!("`{}`", r.id),
        };
        writeln!(
            out,
            "| {} {} | {} | {} | {} | {} |",
            r.status.mark(),
            r.status.as_str(),
            check,
            cell(&r.message),
            cell(&r.evidence.join("\n")),
            cell(r.remediation.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}
