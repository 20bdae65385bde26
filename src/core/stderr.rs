//! The one place library code writes to stderr: notes for the operator, and progress lines.

use std::io::Write;

/// A note for the operator, prefixed `k8sdoctor: ` (verbose logs, failures that do not stop a run).
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "k8sdoctor: {msg}");
}

/// A progress line that rewrites itself on a terminal (`\r`, no newline).
pub fn progress(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{msg}");
    let _ = err.flush();
}

/// The last progress line: rewrites it and ends the line.
pub fn progress_end(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "\r{msg}");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Library code reaches stderr only through this module; the binary (`main.rs`, `cli.rs`) is output code.
    #[test]
    fn no_other_library_module_writes_to_stderr() {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
                    let rel = rel.to_string_lossy().into_owned();
                    let allowed = ["src/main.rs", "src/cli.rs", "src/core/stderr.rs"];
                    let text = std::fs::read_to_string(&p).unwrap();
                    let body = text.split("#[cfg(test)]").next().unwrap_or("");
                    if !allowed.contains(&rel.as_str())
                        && ["eprint", "io::stderr"].iter().any(|w| body.contains(w))
                    {
                        out.push(rel);
                    }
                }
            }
        }
        let mut offenders = vec![];
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut offenders,
        );
        assert!(
            offenders.is_empty(),
            "stderr outside core::stderr: {offenders:?}"
        );
    }
}
