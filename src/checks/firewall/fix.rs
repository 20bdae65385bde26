//! The planner of the `firewall.*` path checks: an ACCEPT before each deciding rule, in the running
//! ruleset and in the saved rules file the distribution loads at boot.

use std::collections::BTreeMap;

use super::{FIREWALL, Origin, SAVED_IPTABLES, SAVED_NFT, accept_rule, blocked_paths};
use crate::{
    core::source::Facts,
    fix::{
        edit,
        plan::{Action, CheckFix, Content, Files, NftRuleStep, RuleStep, Step},
    },
};

/// The saved rules files the planner may edit.
pub fn edits(_: &Facts) -> Vec<String> {
    SAVED_IPTABLES
        .iter()
        .map(|(p, _)| p.to_string())
        .chain(SAVED_NFT.iter().map(|p| p.to_string()))
        .collect()
}

/// A saved rules file being edited: (as read, as edited so far); `None` when it is absent or cannot be edited.
fn saved_text<'a>(
    texts: &'a mut BTreeMap<&'static str, (String, String)>,
    files: &Files,
    path: &'static str,
    fix: &mut CheckFix,
) -> Option<&'a mut (String, String)> {
    if !texts.contains_key(path) {
        match files.text(path) {
            Ok(Some(t)) => {
                texts.insert(path, (t.to_string(), t.to_string()));
            }
            Ok(None) => return None,
            Err(e) => {
                fix.note(e);
                return None;
            }
        }
    }
    texts.get_mut(path)
}

/// Opens each path the check found blocked: an ACCEPT inserted before the deciding rule in the running ruleset
/// (`iptables -C` first, or the nft chain searched for it, so it lands once), and the same line in the
/// distribution's saved rules file (iptables-save files, nftables.conf) when one is in use. Under `--root` the
/// saved file is what the check read, so only the file changes.
pub fn firewall_paths(facts: &Facts, files: &Files, fix: &mut CheckFix) -> Result<(), String> {
    let fw = facts.get(&FIREWALL).map_err(|e| e.to_string())?;
    let blocked = blocked_paths(&fix.id, fw).map_err(|e| e.to_string())?;
    if blocked.is_empty() {
        fix.note("no path is blocked outright: the finding is about rules the evaluator cannot decide; check them by hand");
    }
    for m in &fw.managers {
        fix.note(format!(
            "{} manages the firewall ({}): it drops these rules on its next reload; open the ports through it as well",
            m.name, m.evidence
        ));
    }
    let mut texts: BTreeMap<&str, (String, String)> = BTreeMap::new();
    let mut seen = vec![];
    let mut unsaved = false;
    let mut nft_unsaved = false;
    for b in &blocked {
        for d in b.answer.parts.iter().filter(|d| d.verdict.blocks()) {
            let q = &b.answer.query;
            let Some(at) = d.insert_point() else {
                fix.note(format!(
                    "{}: no place to insert a rule was found",
                    q.describe_for(d.source)
                ));
                continue;
            };
            let accept = accept_rule(fw, q, d.source, &at);
            let key = (
                accept.tool.clone(),
                at.table.clone(),
                at.chain.clone(),
                accept.rule.clone(),
            );
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let by = d.rule.as_ref().map(|r| r.cite()).unwrap_or_default();
            let guessed = if b.guessed {
                " (a CNI default pod range: no CNI is configured yet)"
            } else {
                ""
            };
            if !at.origin.is_iptables() {
                if fw.live {
                    fix.step(Step {
                        why: format!("accept {}{guessed} before {by}", q.describe_for(d.source)),
                        action: Action::NftRule(NftRuleStep {
                            family: at.family.as_str().into(),
                            table: at.table.clone(),
                            chain: at.chain.clone(),
                            before: at.handle,
                            rule: accept.rule.clone(),
                        }),
                    });
                }
                let line = accept.rule.join(" ");
                let before = d.rule.as_ref().map(|r| r.text.as_str());
                let mut saved = false;
                for path in SAVED_NFT {
                    let Some(entry) = saved_text(&mut texts, files, path, fix) else {
                        continue;
                    };
                    if let Some(new) = edit::insert_nft_rule(
                        &entry.1,
                        at.family.as_str(),
                        &at.table,
                        &at.chain,
                        before,
                        at.position,
                        &line,
                    ) {
                        entry.1 = new;
                    }
                    saved |= entry
                        .1
                        .lines()
                        .any(|l| l.split('#').next().unwrap_or("").trim() == line);
                }
                nft_unsaved |= !saved;
                continue;
            }
            if at.origin != Origin::IptablesSaved {
                fix.step(Step {
                    why: format!("accept {}{guessed} before {by}", q.describe_for(d.source)),
                    action: Action::Rule(RuleStep {
                        program: accept.tool.clone(),
                        table: at.table.clone(),
                        chain: at.chain.clone(),
                        position: at.position,
                        spec: accept.rule.clone(),
                    }),
                });
            }
            let line = format!("-A {} {}", at.chain, accept.rule.join(" "));
            let before = d.rule.as_ref().map(|r| r.text.as_str());
            let mut saved = false;
            for (path, _) in SAVED_IPTABLES.iter().filter(|(_, f)| *f == at.family) {
                let Some(entry) = saved_text(&mut texts, files, path, fix) else {
                    continue;
                };
                if let Some(new) = edit::insert_saved_rule(
                    &entry.1,
                    &at.table,
                    &at.chain,
                    before,
                    at.position,
                    &line,
                ) {
                    entry.1 = new;
                }
                saved |= entry.1.lines().any(|l| l.trim() == line);
            }
            unsaved |= !saved;
        }
    }
    for (path, (old, new)) in texts {
        if old != new {
            fix.step(Step::file(
                format!("keep the rules across reboots in {path}"),
                path,
                Content::Text(old),
                Content::Text(new),
            ));
        }
    }
    if nft_unsaved {
        fix.note(format!(
            "no saved nftables ruleset here ({}) holds that chain: add the rules to the file your system loads at boot by hand{}",
            SAVED_NFT.join(", "),
            if fw.live { ", or they last until the next reboot" } else { "" }
        ));
    }
    if unsaved && fw.live {
        fix.note(format!(
            "no saved rules file ({}) is in use: the rules last until the next reboot unless your distribution's tool saves them",
            SAVED_IPTABLES.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(())
}
