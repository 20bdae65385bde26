//! The test harness of the live test files (`harness = false`): a test whose prerequisite (root, a
//! tool) is missing is reported as *ignored, with the reason*, not as passed, so `cargo test` ends with
//! an honest count; with `K8SDOCTOR_PRIVILEGED_TESTS=1` the same test fails instead.
//!
//! A file lists its tests in `main` (`harness::main(vec![trial!(name), ...])`); a test calls
//! [`require`] (or [`require_tools`]) where it needs something, which unwinds out of the test — running
//! the `Drop` of whatever it had set up — when the prerequisite is missing. A kernel built without a
//! feature ([`require_kernel`]) is different: no script can install it, so that test is ignored with
//! the reason even under `K8SDOCTOR_PRIVILEGED_TESTS=1`. A test joins its helper threads with
//! [`join`], so a helper's panic (or its "not run") reaches the report with its message.

use std::{
    any::Any,
    panic::{self, AssertUnwindSafe},
    process::Command,
};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use super::privileged_required;

/// The panic payload of a test that could not run: the reason.
struct NotRun(String);

/// What is missing for a test that needs root (when `root`) and the given tools on PATH.
pub fn missing(root: bool, tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if root && unsafe { libc::geteuid() } != 0 {
        missing.push("root".to_string());
    }
    for t in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(t.to_string());
        }
    }
    missing
}

/// Stops the test as not run (ignored, with `reason`), or fails it under K8SDOCTOR_PRIVILEGED_TESTS=1.
pub fn not_run(reason: String) -> ! {
    assert!(
        !privileged_required(),
        "{reason} (K8SDOCTOR_PRIVILEGED_TESTS=1)"
    );
    panic::panic_any(NotRun(reason))
}

/// A live test: needs root and every tool; otherwise stops here as not run.
pub fn require(tools: &[&str]) {
    let m = missing(true, tools);
    if !m.is_empty() {
        not_run(format!("needs {}", m.join(", ")));
    }
}

/// A test that needs these tools (but not root); otherwise stops here as not run.
pub fn require_tools(tools: &[&str]) {
    let m = missing(false, tools);
    if !m.is_empty() {
        not_run(format!("needs {}", m.join(", ")));
    }
}

/// A test that needs a feature of the running kernel (`what`, e.g. "multicast routing
/// (CONFIG_IP_MROUTE)"), present when `present()` says so; otherwise it stops here as not run, with
/// the reason, whatever K8SDOCTOR_PRIVILEGED_TESTS says.
pub fn require_kernel(what: &str, present: impl FnOnce() -> bool) {
    if !present() {
        kernel_lacks(what);
    }
}

/// Stops the test as not run because the kernel lacks `what` (ignored even when privileged tests
/// are required: a kernel feature is not a package CI could install).
pub fn kernel_lacks(what: &str) -> ! {
    panic::panic_any(NotRun(format!("kernel lacks {what}")))
}

/// Joins a helper thread; its panic goes on unwinding in this thread with the same payload, so the
/// test fails with the helper's own message (or is not run, when the helper found a prerequisite
/// missing) rather than with `Any { .. }`.
pub fn join<T>(handle: std::thread::JoinHandle<T>) -> T {
    handle
        .join()
        .unwrap_or_else(|payload| panic::resume_unwind(payload))
}

fn message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the test panicked".to_string())
}

/// Runs one test body: a panic fails it with the panic's message, [`require`] and its kin turn it
/// into "ignored, <reason>".
pub fn outcome(f: impl FnOnce()) -> Result<Completion, Failed> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Ok(Completion::Completed),
        Err(p) => match p.downcast_ref::<NotRun>() {
            Some(NotRun(reason)) => Ok(Completion::ignored_with(reason)),
            None => Err(Failed::from(message(&*p))),
        },
    }
}

/// One test of the file, run through [`outcome`].
pub fn trial(name: &str, f: fn()) -> Trial {
    Trial::ignorable_test(name, move || outcome(f))
}

/// `trial!(name)`: the trial for the function `name`, under its own name.
#[macro_export]
macro_rules! trial {
    ($f:ident) => {
        $crate::support::harness::trial(stringify!($f), $f)
    };
}

/// Runs the file's tests with libtest's command line (filters, `--list`, `--test-threads`, ...).
pub fn main(trials: Vec<Trial>) -> ! {
    // A test that did not run is not a panic worth a backtrace: keep the default hook for the rest.
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<NotRun>().is_none() {
            default(info)
        }
    }));
    libtest_mimic::run(&Arguments::from_args(), trials).exit()
}
