//! The tape under [`Host`](super::host::Host): every input a source reads (host files, listings, links,
//! stats, commands, probes) as a [`Call`] and its [`Answer`], recorded by source while a run gathers
//! (`check --bundle`) or replayed in place of the host (`check --from-bundle`). What is recorded is
//! masked first, and the recording run is handed the masked answer too, so the run that wrote a bundle
//! and every replay of it see the same inputs. The answers' own types (a file's stat, a command's
//! error) live here, so the host and its tape depend one way.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::facts::{Fact, FactError};
use crate::mask::mask_secrets;

/// The source name inputs read outside any source are recorded under: the role, stage and host block.
pub const RUN: &str = "run";

/// Why a replayed input is absent.
pub const NOT_IN_BUNDLE: &str = "not in the bundle";

/// One read of the outside world.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Call {
    /// A host file's bytes.
    Read {
        path: String,
    },
    Exists {
        path: String,
    },
    Link {
        path: String,
    },
    List {
        path: String,
    },
    Stat {
        path: String,
    },
    /// A command and its arguments.
    Run {
        argv: Vec<String>,
    },
    /// Anything else a source asks the world (an API answer, a socket probe, the resolver), by a key
    /// the source names; its answer is the source's own serialized value.
    Probe {
        key: String,
    },
}

/// A host file as read: its bytes (masked) and what `fstat` said of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileBody {
    /// Kept out of the JSON: the bundle stores the bytes as a member of their own.
    #[serde(skip)]
    pub bytes: Vec<u8>,
    /// The bundle member holding the bytes (set by the bundle writer, read by its reader).
    #[serde(default)]
    pub member: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `file` or `null-device` (/dev/null masks files and reads empty).
    pub kind: String,
}

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmdOutput {
    /// None when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    File(Fact<Option<FileBody>>),
    Bool(bool),
    Link(Option<String>),
    List(Fact<Vec<String>>),
    Stat(Fact<Option<FileStat>>),
    Run(Result<CmdOutput, CmdError>),
    Value(serde_json::Value),
}

/// One recorded input: the source it fed, the call and the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub source: String,
    pub call: Call,
    pub answer: Answer,
}

thread_local! {
    /// The sources being gathered on this thread, innermost last.
    static SOURCES: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` as the gathering of `source`: what it reads is recorded under that name.
pub fn in_source<R>(source: &'static str, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SOURCES.with(|s| s.borrow_mut().pop());
        }
    }
    SOURCES.with(|s| s.borrow_mut().push(source));
    let _pop = Pop;
    f()
}

/// The source this thread gathers now ([`RUN`] outside any).
pub fn current() -> &'static str {
    SOURCES.with(|s| s.borrow().last().copied().unwrap_or(RUN))
}

/// Masks an answer's text as it is recorded: file bytes that are text, command output, probe values.
pub fn mask(answer: Answer) -> Answer {
    match answer {
        Answer::File(Ok(Some(mut body))) => {
            if let Ok(text) = std::str::from_utf8(&body.bytes) {
                body.bytes = mask_secrets(text).into_bytes();
            }
            Answer::File(Ok(Some(body)))
        }
        Answer::Run(Ok(out)) => Answer::Run(Ok(CmdOutput {
            code: out.code,
            stdout: mask_secrets(&out.stdout),
            stderr: mask_secrets(&out.stderr),
        })),
        Answer::Run(Err(e)) => Answer::Run(Err(mask_cmd_error(e))),
        Answer::Value(v) => Answer::Value(mask_value(v)),
        Answer::File(Err(e)) => Answer::File(Err(mask_fact_error(e))),
        Answer::List(Err(e)) => Answer::List(Err(mask_fact_error(e))),
        Answer::Stat(Err(e)) => Answer::Stat(Err(mask_fact_error(e))),
        other => other,
    }
}

fn mask_fact_error(e: FactError) -> FactError {
    match e {
        FactError::Missing(m) => FactError::Missing(mask_secrets(&m)),
        FactError::Unreadable(m) => FactError::Unreadable(mask_secrets(&m)),
    }
}

fn mask_cmd_error(e: CmdError) -> CmdError {
    match e {
        CmdError::Failed {
            program,
            code,
            stderr,
        } => CmdError::Failed {
            program,
            code,
            stderr: mask_secrets(&stderr),
        },
        CmdError::NeedsRoot { program, said } => CmdError::NeedsRoot {
            program,
            said: mask_secrets(&said),
        },
        CmdError::Spawn(p, m) => CmdError::Spawn(p, mask_secrets(&m)),
        other => other,
    }
}

/// Every string of a JSON value masked, keys too (a map keyed by a secret is still a secret).
fn mask_value(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as V;
    match v {
        V::String(s) => V::String(mask_secrets(&s)),
        V::Array(a) => V::Array(a.into_iter().map(mask_value).collect()),
        V::Object(o) => V::Object(
            o.into_iter()
                .map(|(k, v)| (mask_secrets(&k), mask_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// What a recording run has read so far, by source and call (so the order threads finish in never
/// shows in the bundle).
#[derive(Debug, Default)]
pub struct Recorder {
    entries: Mutex<BTreeMap<(String, Call), Answer>>,
}

impl Recorder {
    /// Records an answer (masked) under the current source and hands back what was recorded.
    pub fn record(&self, call: Call, answer: Answer) -> Answer {
        let answer = mask(answer);
        let key = (current().to_string(), call);
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.entry(key).or_insert_with(|| answer.clone());
        answer
    }

    /// Every entry, ordered by source then call.
    pub fn entries(&self) -> Vec<Entry> {
        let e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.iter()
            .map(|((source, call), answer)| Entry {
                source: source.clone(),
                call: call.clone(),
                answer: answer.clone(),
            })
            .collect()
    }
}

/// The facts of the recorded host a replay needs besides the entries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recorded {
    /// The root as the operator gave it.
    pub root: String,
    /// Whether it was the live host.
    pub live: bool,
    /// Whether the network state was read live under the root (`--live-network`).
    #[serde(default)]
    pub live_network: bool,
}

/// A recorded run to answer from: every entry by (source, call), and which sources were recorded.
#[derive(Debug, Default)]
pub struct Replay {
    entries: HashMap<(String, Call), Answer>,
    sources: BTreeSet<String>,
}

impl Replay {
    /// Builds the index; `sources` are the sources the recording gathered (a source absent from it is
    /// `not in the bundle`, even when it would have read nothing).
    pub fn new(entries: Vec<Entry>, sources: BTreeSet<String>) -> Replay {
        Replay {
            entries: entries
                .into_iter()
                .map(|e| ((e.source, e.call), e.answer))
                .collect(),
            sources,
        }
    }

    /// Whether the recording gathered this source.
    pub fn has_source(&self, name: &str) -> bool {
        name == RUN || self.sources.contains(name)
    }

    /// The recorded answer to a call of the current source.
    pub fn answer(&self, call: &Call) -> Option<&Answer> {
        self.entries.get(&(current().to_string(), call.clone()))
    }
}

/// A replayed call with no recorded answer.
pub fn absent() -> FactError {
    FactError::Missing(NOT_IN_BUNDLE.into())
}

/// What `stat` says of a host file, for the checks that judge ownership and permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o600`).
    pub mode: u32,
    pub is_file: bool,
    pub is_dir: bool,
}

/// Why a command gave no usable output.
#[derive(Debug, Error, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CmdError {
    #[error("{0} is not installed (not found in PATH)")]
    NotFound(String),
    #[error("{0} did not finish within {1:?}")]
    Timeout(String, Duration),
    #[error("{program} exited with {code}: {stderr}")]
    Failed {
        program: String,
        code: String,
        stderr: String,
    },
    #[error("cannot run {0}: {1}")]
    Spawn(String, String),
    #[error("{0} wrote more than {1} MiB; its output was not used")]
    TooLarge(String, u64),
    #[error(
        "{program} was refused access ({said}): run k8sdoctor as root (in a container, root with CAP_NET_ADMIN)"
    )]
    NeedsRoot { program: String, said: String },
    #[error("{0}: {nib}", nib = NOT_IN_BUNDLE)]
    NotInBundle(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_by_source_masked_and_in_order() {
        let r = Recorder::default();
        let body = |s: &str| {
            Answer::File(Ok(Some(FileBody {
                bytes: s.as_bytes().to_vec(),
                member: String::new(),
                mode: 0o600,
                uid: 0,
                gid: 0,
                kind: "file".into(),
            })))
        };
        in_source("b-source", || {
            r.record(Call::Exists { path: "/x".into() }, Answer::Bool(true))
        });
        let got = in_source("a-source", || {
            in_source("inner", || {
                r.record(
                    Call::Read {
                        path: "/etc/env".into(),
                    },
                    body("HTTPS_PROXY=http://u:hunter2@p:3128\n"),
                )
            })
        });
        let Answer::File(Ok(Some(b))) = &got else {
            panic!("{got:?}")
        };
        assert_eq!(b.bytes, b"HTTPS_PROXY=http://u:****@p:3128\n");
        let e = r.entries();
        let names: Vec<&str> = e.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(names, ["b-source", "inner"]);
        assert_eq!(current(), RUN);
        let replay = Replay::new(e, ["inner".to_string()].into());
        let call = Call::Read {
            path: "/etc/env".into(),
        };
        assert!(replay.answer(&call).is_none(), "another source's entry");
        assert_eq!(
            in_source("inner", || replay.answer(&call).cloned()),
            Some(got)
        );
        assert!(replay.has_source("inner") && !replay.has_source("b-source"));
    }

    #[test]
    fn probe_values_are_masked_keys_and_all() {
        let v = serde_json::json!({"a": ["Bearer abc"], "token=x": 1});
        let Answer::Value(m) = mask(Answer::Value(v)) else {
            unreachable!()
        };
        assert_eq!(
            m,
            serde_json::json!({"a": ["Bearer ****"], "token=****": 1})
        );
    }
}
