//! Bench support: run a command many times, take median wall time and peak RSS (wait4 rusage), print ratios.
#![allow(dead_code)]

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// One run of a child: wall time and its peak resident set size in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub maxrss_kib: i64,
}

/// Spawns the command (stdin and stderr discarded), collects its stdout, reaps it with wait4 and
/// returns its exit status, stdout and sample.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
pub fn run_capture(cmd: &mut Command) -> (ExitStatus, String, Sample) {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn benchmark command");
    let mut out = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps the child we spawned.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    assert_eq!(r, pid, "wait4 failed");
    let sample = Sample {
        wall,
        maxrss_kib: ru.ru_maxrss,
    };
    (
        ExitStatus::from_raw(status),
        reader.join().unwrap_or_default(),
        sample,
    )
}

/// One run with its output discarded.
pub fn run_once(cmd: &mut Command) -> Sample {
    run_capture(cmd).2
}

/// Median of `n` runs (wall time and peak RSS separately).
pub fn median(n: usize, mut make: impl FnMut() -> Command) -> Sample {
    let mut walls = Vec::with_capacity(n);
    let mut rss = Vec::with_capacity(n);
    for _ in 0..n {
        let s = run_once(&mut make());
        walls.push(s.wall);
        rss.push(s.maxrss_kib);
    }
    walls.sort();
    rss.sort();
    Sample {
        wall: walls[n / 2],
        maxrss_kib: rss[n / 2],
    }
}

/// The median of a list of measurements.
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Prints one comparison line and returns (time ratio, rss ratio).
pub fn report(name: &str, ours: Sample, reference_name: &str, reference: Sample) -> (f64, f64) {
    let tr = ours.wall.as_secs_f64() / reference.wall.as_secs_f64();
    let mr = ours.maxrss_kib as f64 / reference.maxrss_kib as f64;
    println!(
        "{name}: median {:.2} ms, peak RSS {:.1} MB | {reference_name}: median {:.2} ms, peak RSS {:.1} MB | ratio time {tr:.2}x, RSS {mr:.2}x",
        ours.wall.as_secs_f64() * 1e3,
        ours.maxrss_kib as f64 / 1024.0,
        reference.wall.as_secs_f64() * 1e3,
        reference.maxrss_kib as f64 / 1024.0,
    );
    (tr, mr)
}
