//! Rendering of `fix`: each step as the command it runs or the unified diff it writes, then before → after.

use std::io::Write;

use similar::TextDiff;

use crate::report::status_table;

use super::{
    FixFormat, FixReport, StepState,
    journal::shell_line,
    plan::{Action, Content},
};

/// What a step does, exactly: `$ command` lines, or a unified diff for a file.
pub fn preview(action: &Action) -> String {
    match action {
        Action::Command { argv, .. } => format!("$ {}", shell_line(argv)),
        Action::Rule(r) => format!(
            "$ {} || {}",
            shell_line(&r.check_argv()),
            shell_line(&r.insert_argv())
        ),
        Action::NftRule(r) => format!("$ {}", shell_line(&r.insert_argv())),
        Action::File { path, old, new } => match (old, new) {
            (_, Content::Link(t)) => {
                format!("$ ln -sfn {} {path}", shell_line(std::slice::from_ref(t)))
            }
            (_, Content::Absent) => format!("$ rm {path}"),
            (old, Content::Text(new)) => {
                let (from, before) = match old {
                    Content::Text(t) => (path.as_str(), t.as_str()),
                    _ => ("/dev/null", ""),
                };
                TextDiff::from_lines(before, new.as_str())
                    .unified_diff()
                    .context_radius(3)
                    .header(from, path)
                    .to_string()
            }
        },
    }
}

fn state_label(s: StepState) -> &'static str {
    match s {
        StepState::Planned => "",
        StepState::Applied => " [applied]",
        StepState::AlreadyDone => " [already in place]",
        StepState::Skipped => " [skipped]",
        StepState::Failed => " [FAILED]",
        StepState::RolledBack => " [rolled back]",
        StepState::NotRun => " [not run]",
    }
}

/// Renders the fix report as text for a terminal, or as the JSON contract.
pub fn render(
    report: &FixReport,
    format: FixFormat,
    color: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if format == FixFormat::Json {
        serde_json::to_writer_pretty(&mut *out, report)?;
        return writeln!(out);
    }
    let what = match report.mode {
        "dry-run" => "dry run (nothing is changed)",
        "apply" => "apply",
        _ => "undo",
    };
    writeln!(out, "k8sdoctor fix: {what} on {}", report.root)?;
    for f in &report.fixes {
        writeln!(
            out,
            "\n{} {} ({}): {}",
            f.before.mark(),
            f.id,
            f.before.as_str(),
            f.message
        )?;
        for (i, s) in f.steps.iter().enumerate() {
            writeln!(out, "  {}. {}{}", i + 1, s.step.why, state_label(s.state))?;
            for l in s.preview.lines() {
                writeln!(out, "       {l}")?;
            }
            if let Some(d) = &s.detail {
                writeln!(out, "       → {d}")?;
            }
        }
        if f.steps.is_empty() && f.notes.is_empty() {
            writeln!(out, "  nothing to change")?;
        }
        for n in &f.notes {
            writeln!(out, "  note: {n}")?;
        }
    }
    if !report.reversals.is_empty() {
        writeln!(out)?;
        for r in &report.reversals {
            let mark = if r.ok { "✓" } else { "✗" };
            writeln!(out, "{mark} {}: {}", r.check, r.action)?;
            if let Some(d) = &r.detail {
                writeln!(out, "    → {d}")?;
            }
        }
    }
    if !report.verify.is_empty() {
        let mut t = status_table(&["check", "before", "after", "now"], color);
        for v in &report.verify {
            t.add_row(vec![
                v.id.clone(),
                format!("{} {}", v.before.mark(), v.before.as_str()),
                format!("→ {} {}", v.after.mark(), v.after.as_str()),
                v.message.clone(),
            ]);
        }
        writeln!(out, "\n{t}")?;
    }
    writeln!(out, "\n{}", report.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_previews_are_unified_diffs() {
        let a = Action::File {
            path: "/etc/fstab".into(),
            old: Content::Text("a\n/dev/sda2 none swap sw 0 0\nb\n".into()),
            new: Content::Text("a\n#/dev/sda2 none swap sw 0 0\nb\n".into()),
        };
        assert_eq!(
            preview(&a),
            "--- /etc/fstab\n+++ /etc/fstab\n@@ -1,3 +1,3 @@\n a\n-/dev/sda2 none swap sw 0 0\n+#/dev/sda2 none swap sw 0 0\n b\n"
        );
        let c = Action::File {
            path: "/etc/modules-load.d/k8s.conf".into(),
            old: Content::Absent,
            new: Content::Text("br_netfilter\n".into()),
        };
        assert!(preview(&c).starts_with(
            "--- /dev/null\n+++ /etc/modules-load.d/k8s.conf\n@@ -0,0 +1 @@\n+br_netfilter"
        ));
        let m = Action::File {
            path: "/etc/systemd/system/dev-sda2.swap".into(),
            old: Content::Absent,
            new: Content::Link("/dev/null".into()),
        };
        assert_eq!(
            preview(&m),
            "$ ln -sfn /dev/null /etc/systemd/system/dev-sda2.swap"
        );
    }
}
