//! Markdown rendering for tickets: a summary line and a table of results.

use std::io::Write;

use super::Report;

/// Escapes text for one markdown table cell.
pub fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

pub(super) fn render(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "## k8sdoctor report: {}\n", report.host.hostname)?;
    writeln!(
        out,
        "Role `{}`, root `{}`, {}; {}.\n",
        report.host.role, report.host.root, report.started_at, report.summary
    )?;
    writeln!(out, "| status | check | message | evidence | remediation |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for r in &report.results {
        writeln!(
            out,
            "| {} {} | `{}` | {} | {} | {} |",
            r.status.mark(),
            r.status.as_str(),
            r.id,
            cell(&r.message),
            cell(&r.evidence.join("\n")),
            cell(r.remediation.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}
