//! SELinux mode, now (`/sys/fs/selinux/enforce`) and at boot (`/etc/selinux/config`); the `selinux.mode` check.

use super::{Area, sysctl::first_token};
use crate::{
    core::{
        check::{CheckDef, Ctx, Finding, Outcome},
        facts::Fact,
        host::Host,
        source::{Facts, Source},
    },
    fix::{
        edit,
        plan::{CheckFix, Content, Files, Fix, Step},
    },
};

pub const AREA: Area = Area {
    checks: CHECKS,
    fixes: &[Fix {
        check: "selinux.mode",
        edits: |_| vec![CONFIG.into()],
        plan: selinux_mode,
    }],
};

/// SELinux's mode now and at boot.
pub const SELINUX: Source<SelinuxFacts> = Source::files("selinux", |g| gather(g.host));

const CHECKS: &[CheckDef] = &[CheckDef {
    id: "selinux.mode",
    needs: &[&SELINUX],
    run: mode,
}];

pub const ENFORCE: &str = "/sys/fs/selinux/enforce";
pub const CONFIG: &str = "/etc/selinux/config";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelinuxFacts {
    /// `Some(true)` enforcing, `Some(false)` permissive, `None` when SELinux is not mounted.
    pub enforcing_now: Option<bool>,
    /// `SELINUX=` from the config and its line.
    pub at_boot: Option<(String, usize)>,
}

/// `SELINUX=enforcing` (and its line) from /etc/selinux/config.
pub fn parse_config(text: &str) -> Option<(String, usize)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let v = l.trim().strip_prefix("SELINUX=")?;
        Some((v.trim().trim_matches('"').to_ascii_lowercase(), i + 1))
    })
}

pub fn gather(host: &Host) -> Fact<SelinuxFacts> {
    Ok(SelinuxFacts {
        enforcing_now: host.read_opt(ENFORCE)?.map(|t| first_token(&t) == "1"),
        at_boot: host.read_opt(CONFIG)?.and_then(|t| parse_config(&t)),
    })
}

fn mode(facts: &Facts, _ctx: &Ctx) -> Outcome {
    let s = facts.get(&SELINUX)?;
    let mut ev = vec![match s.enforcing_now {
        Some(e) => format!("{ENFORCE} = {}", u8::from(e)),
        None => format!("{ENFORCE}: absent (SELinux disabled or not in this kernel)"),
    }];
    if let Some((v, l)) = &s.at_boot {
        ev.push(format!("{CONFIG}:{l}: SELINUX={v}"));
    }
    let boot_enforcing = s.at_boot.as_ref().is_some_and(|(v, _)| v == "enforcing");
    match (s.enforcing_now == Some(true), boot_enforcing) {
        (false, false) => Ok(Finding::pass("SELinux is not enforcing").evidence_all(ev)),
        (now, boot) => Ok(Finding::warn(format!(
            "SELinux is enforcing{}: containers that mount host paths are denied unless labelled",
            match (now, boot) {
                (true, true) => " now and at boot",
                (true, false) => " now",
                _ => " at the next boot",
            }
        ))
        .evidence_all(ev)),
    }
}

fn selinux_mode(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let s = facts.get(&SELINUX).map_err(|e| e.to_string())?;
    if s.enforcing_now == Some(true) {
        fix.step(Step::command(
            "switch SELinux to permissive now",
            &["setenforce", "0"],
            Some(&["setenforce", "1"]),
        ));
    }
    if let Some(text) = files.text(CONFIG)?
        && let Some((mode, line)) = parse_config(text)
        && mode == "enforcing"
    {
        fix.step(Step::file(
            "boot SELinux in permissive mode",
            CONFIG,
            Content::Text(text.to_string()),
            Content::Text(edit::replace_line(text, line, "SELINUX=permissive")),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        checks::fix_test::{files, plan},
        core::check::{Role, Status},
        fix::plan::Action,
    };

    fn run(now: Option<bool>, cfg: &str) -> Finding {
        let f = Facts::default().with(
            &SELINUX,
            Ok(SelinuxFacts {
                enforcing_now: now,
                at_boot: parse_config(cfg),
            }),
        );
        let ctx = Ctx {
            role: Role::Worker,
            now: std::time::SystemTime::now(),
        };
        mode(&f, &ctx).unwrap()
    }

    #[test]
    fn enforcing_now_or_at_boot_warns() {
        let cfg =
            "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n";
        let f = run(Some(true), cfg);
        assert_eq!(f.status, Status::Warn);
        assert_eq!(
            f.evidence,
            [
                "/sys/fs/selinux/enforce = 1",
                "/etc/selinux/config:2: SELINUX=enforcing"
            ]
        );
        assert_eq!(run(Some(false), cfg).status, Status::Warn);
        assert_eq!(
            run(Some(false), "SELINUX=permissive\n").status,
            Status::Pass
        );
        assert_eq!(run(None, "").status, Status::Pass);
        assert_eq!(
            parse_config("SELINUX=\"Enforcing\" \n"),
            Some(("enforcing".into(), 1))
        );
    }

    #[test]
    fn selinux_goes_permissive_now_and_at_boot() {
        let fx = Facts::default().with(
            &SELINUX,
            Ok(SelinuxFacts {
                enforcing_now: Some(true),
                at_boot: Some(("enforcing".into(), 2)),
            }),
        );
        let cfg = "# SELinux\nSELINUX=enforcing\r\nSELINUXTYPE=targeted\n";
        let fix = plan(
            selinux_mode,
            &fx,
            &files(&[(CONFIG, Content::Text(cfg.into()))]),
        );
        let Action::File { new, .. } = &fix.steps[1].action else {
            panic!()
        };
        assert_eq!(
            *new,
            Content::Text("# SELinux\nSELINUX=permissive\r\nSELINUXTYPE=targeted\n".into())
        );
    }
}
