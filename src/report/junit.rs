//! JUnit XML rendering for CI: one testcase per check; fail and error map to failure and error.

use std::io::Write;

use super::Report;
use crate::core::check::Status;

/// Escapes text for XML attributes and content.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

pub(super) fn render(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let s = &report.summary;
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="k8sdoctor" tests="{}" failures="{}" errors="{}" skipped="{}" time="{:.3}">"#,
        report.results.len(),
        s.fail,
        s.error,
        s.skip,
        report.duration_ms as f64 / 1000.0
    )?;
    writeln!(
        out,
        r#"  <testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="{}" timestamp="{}">"#,
        xml_escape(&report.host.hostname),
        report.results.len(),
        s.fail,
        s.error,
        s.skip,
        xml_escape(&report.started_at)
    )?;
    for r in &report.results {
        let body = {
            let mut b = r.message.clone();
            for e in &r.evidence {
                b.push_str("\n  ");
                b.push_str(e);
            }
            if let Some(fix) = &r.remediation {
                b.push_str("\nremediation: ");
                b.push_str(fix);
            }
            xml_escape(&b)
        };
        // A manifests result is one object: its file is the class, the object the name.
        let (class, name) = match &r.subject {
            Some(s) => (
                s.file.clone(),
                format!(
                    "{} {}:{} {} {}",
                    r.id,
                    s.file,
                    s.line,
                    s.kind.as_deref().unwrap_or("?"),
                    s.name.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_string(),
            ),
            None => ("k8sdoctor".to_string(), r.id.clone()),
        };
        write!(
            out,
            r#"    <testcase classname="{}" name="{}" time="{:.3}">"#,
            xml_escape(&class),
            xml_escape(&name),
            r.duration_ms as f64 / 1000.0
        )?;
        match r.status {
            Status::Pass => {}
            Status::Warn => write!(out, "<system-out>warning: {body}</system-out>")?,
            Status::Skip => write!(out, r#"<skipped message="{}"/>"#, xml_escape(&r.message))?,
            Status::Fail => write!(
                out,
                r#"<failure message="{}">{body}</failure>"#,
                xml_escape(&r.message)
            )?,
            Status::Error => write!(
                out,
                r#"<error message="{}">{body}</error>"#,
                xml_escape(&r.message)
            )?,
        }
        writeln!(out, "</testcase>")?;
    }
    writeln!(out, "  </testsuite>\n</testsuites>")
}
