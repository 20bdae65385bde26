//! Terminal rendering: one row per check with its mark, message and remediation, then a summary line.

use std::io::Write;

use comfy_table::{
    Attribute, Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED,
};

use super::Report;
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

pub(super) fn render(report: &Report, color: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let mut t = status_table(&["", "check", "result"], color);
    for r in &report.results {
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
        let mark = Cell::new(r.status.mark());
        let mark = if color {
            mark.fg(color_of(r.status))
        } else {
            mark
        };
        t.add_row(vec![mark, Cell::new(&r.id), Cell::new(text)]);
    }
    writeln!(out, "{t}")?;
    writeln!(out, "{} in {} ms", report.summary, report.duration_ms)
}
