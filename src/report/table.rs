//! Terminal rendering: one row per check with its mark, message and remediation, then a summary line.

use std::io::Write;

use comfy_table::{
    Attribute, Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED,
};

use super::{CheckResult, Report};
use crate::core::check::Status;

fn color_of(s: Status) -> Color {
    match s {
        Status::Pass => Color::Green,
        Status::Warn => Color::Yellow,
        Status::Fail => Color::Red,
        Status::Skip => Color::DarkGrey,
        Status::Error => Color::Magenta,
    }
}

/// A table with the given header, coloured or plain; shared by every table-shaped output.
pub fn status_table(header: &[&str], color: bool) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(
            header
                .iter()
                .map(|h| Cell::new(h).add_attribute(Attribute::Bold)),
        );
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    // No terminal, or one that reports no size (a bare pty): a readable default.
    if t.width().is_none_or(|w| w < 40) {
        t.set_width(120);
    }
    t
}

/// The text of one result's row: message, evidence, and the remediation of what needs one.
fn row_text(r: &CheckResult) -> String {
    let mut text = r.message.clone();
    for e in &r.evidence {
        text.push_str("\n  • ");
        text.push_str(e);
    }
    if matches!(r.status, Status::Warn | Status::Fail | Status::Error)
        && let Some(fix) = &r.remediation
    {
        text.push_str("\n→ ");
        text.push_str(fix);
    }
    text
}

/// Skipped results that share their reason, by reason, in the order they first appear: each group
/// of two or more is one row unless `--show-skipped`.
fn skip_groups(results: &[CheckResult]) -> Vec<(&str, Vec<&CheckResult>)> {
    let mut groups: Vec<(&str, Vec<&CheckResult>)> = Vec::new();
    for r in results.iter().filter(|r| r.status == Status::Skip) {
        match groups.iter_mut().find(|(m, _)| *m == r.message) {
            Some((_, g)) => g.push(r),
            None => groups.push((&r.message, vec![r])),
        }
    }
    groups.retain(|(_, g)| g.len() > 1);
    groups
}

/// "5 cluster checks" when every id is of one area (the part before the dot), else "5 checks".
fn count_label(group: &[&CheckResult]) -> String {
    let area = |r: &CheckResult| r.id.split('.').next().unwrap_or_default().to_string();
    let first = area(group[0]);
    if group.iter().all(|r| area(r) == first) {
        format!("{} {first} checks", group.len())
    } else {
        format!("{} checks", group.len())
    }
}

/// `manifests` results (each about an object of a file): one table per file, a row per object.
fn render_by_file(report: &Report, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(m) = &report.manifests {
        writeln!(
            out,
            "Target Kubernetes {} ({}){}",
            m.target_version,
            m.target_from,
            report
                .cluster
                .as_ref()
                .map(|c| format!(", cluster {}", c.server))
                .unwrap_or_default()
        )?;
    }
    let mut files: Vec<&str> = Vec::new();
    for r in &report.results {
        let f = r.subject.as_ref().map_or("", |s| s.file.as_str());
        if !files.contains(&f) {
            files.push(f);
        }
    }
    for file in files {
        let rows: Vec<&CheckResult> = report
            .results
            .iter()
            .filter(|r| r.subject.as_ref().map_or("", |s| s.file.as_str()) == file)
            .collect();
        writeln!(out, "\n{file} ({} object(s))", rows.len())?;
        let mut t = status_table(&["", "line", "object", "result"], color);
        for r in rows {
            let s = r.subject.as_ref();
            let object = s.map_or(String::new(), |s| {
                let mut o = s.kind.clone().unwrap_or_default();
                if let Some(n) = &s.name {
                    o.push(' ');
                    if let Some(ns) = &s.namespace {
                        o.push_str(ns);
                        o.push('/');
                    }
                    o.push_str(n);
                }
                if let Some(v) = &s.api_version {
                    o.push_str(&format!("\n{v}"));
                }
                o
            });
            let c = Cell::new(r.status.mark());
            t.add_row(vec![
                if color { c.fg(color_of(r.status)) } else { c },
                Cell::new(s.map_or(String::new(), |s| {
                    format!("{} (doc {})", s.line, s.document)
                })),
                Cell::new(object),
                Cell::new(row_text(r)),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    writeln!(out, "{} in {} ms", report.summary, report.duration_ms)
}

pub(super) fn render(
    report: &Report,
    color: bool,
    show_skipped: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if report.manifests.is_some() {
        return render_by_file(report, color, out);
    }
    let mut t = status_table(&["", "check", "result"], color);
    let groups = if show_skipped {
        Vec::new()
    } else {
        skip_groups(&report.results)
    };
    let mark = |s: Status| {
        let c = Cell::new(s.mark());
        if color { c.fg(color_of(s)) } else { c }
    };
    for r in &report.results {
        if groups
            .iter()
            .any(|(_, g)| g.iter().any(|x| std::ptr::eq(*x, r)))
        {
            continue;
        }
        t.add_row(vec![
            mark(r.status),
            Cell::new(&r.id),
            Cell::new(row_text(r)),
        ]);
    }
    for (reason, g) in &groups {
        t.add_row(vec![
            mark(Status::Skip),
            Cell::new(count_label(g)),
            Cell::new(format!("skipped: {reason} (--show-skipped lists them)")),
        ]);
    }
    writeln!(out, "{t}")?;
    writeln!(out, "{} in {} ms", report.summary, report.duration_ms)
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
            evidence: vec![],
            remediation: None,
            fix_available: false,
            duration_ms: 0,
            subject: None,
            replacement: None,
        }
    }

    fn rendered(results: Vec<CheckResult>, show_skipped: bool) -> String {
        let report = Report::new(
            std::time::SystemTime::now(),
            0,
            Default::default(),
            None,
            results,
        );
        let mut out = Vec::new();
        render(&report, false, show_skipped, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn skips_that_share_a_reason_fold_into_one_row_unless_asked() {
        let results = vec![
            result("cluster.cni", Status::Skip, "no kubeconfig"),
            result("swap.active", Status::Fail, "swap is on"),
            result("cluster.dns", Status::Skip, "no kubeconfig"),
            result("cluster.nodes-ready", Status::Skip, "no kubeconfig"),
            result("firewall.backend", Status::Skip, "not the live host"),
        ];
        let folded = rendered(results.clone(), false);
        assert!(
            folded.contains("3 cluster checks") && folded.contains("skipped: no kubeconfig"),
            "{folded}"
        );
        assert!(!folded.contains("cluster.cni"), "{folded}");
        // A reason only one check has stays that check's own row.
        assert!(folded.contains("firewall.backend"), "{folded}");
        assert!(folded.contains("swap.active"), "{folded}");
        let full = rendered(results, true);
        for id in [
            "cluster.cni",
            "cluster.dns",
            "cluster.nodes-ready",
            "firewall.backend",
        ] {
            assert!(full.contains(id), "{id}: {full}");
        }
        assert!(!full.contains("--show-skipped"), "{full}");
    }

    #[test]
    fn a_group_of_several_areas_is_counted_as_checks() {
        let folded = rendered(
            vec![
                result("cluster.cni", Status::Skip, "no kubeconfig"),
                result("token.expiry", Status::Skip, "no kubeconfig"),
            ],
            false,
        );
        assert!(folded.contains("2 checks"), "{folded}");
    }
}
