//! The one place library code writes to stderr: notes for the operator, and progress lines.

use std::io::Write;

/// A note for the operator, prefixed `k8sdoctor: ` (verbose logs, failures that do not stop a run).
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "k8sdoctor: {msg}");
}

/// A progress line that rewrites itself on a terminal (`\r`), ending the line.
pub fn progress(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\r{msg}");
}
