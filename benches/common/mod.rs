//! Bench support: run a command many times, take median wall time and peak RSS (wait4 rusage), print
//! ratios; and a small launcher that measures a command's whole process tree without counting the
//! bench process (a child's peak RSS starts at the RSS of the process that forked it).
#![allow(dead_code)]

use std::{
    ffi::OsString,
    fs::File,
    io::Read,
    os::unix::process::ExitStatusExt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// One run of a child: wall time, its peak resident set size in KiB, and the CPU time it used (user and
/// system, which waiting for a CPU on a loaded machine does not add to).
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub maxrss_kib: i64,
    pub cpu: Duration,
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
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let sample = Sample {
        wall,
        maxrss_kib: ru.ru_maxrss,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
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
    let mut cpu = Vec::with_capacity(n);
    for _ in 0..n {
        let s = run_once(&mut make());
        walls.push(s.wall);
        rss.push(s.maxrss_kib);
        cpu.push(s.cpu);
    }
    walls.sort();
    rss.sort();
    cpu.sort();
    Sample {
        wall: walls[n / 2],
        maxrss_kib: rss[n / 2],
        cpu: cpu[n / 2],
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

/// Set in the environment of a bench binary re-executed as the launcher.
const LAUNCH_ENV: &str = "K8SDOCTOR_BENCH_LAUNCH";

/// One launched run: wall time, the child's wait4 peak RSS (the largest single process of its tree)
/// and the peak of the whole tree's summed RSS (sampled every millisecond, never below the former).
#[derive(Debug, Clone, Copy)]
pub struct Launched {
    pub code: i32,
    pub wall: Duration,
    pub maxrss_kib: i64,
    pub tree_kib: i64,
}

/// Call first in a bench's `main`: when this process was started as the launcher, it runs the command
/// it was given, prints one [`Launched`] line on stderr and exits.
pub fn launcher_entry() {
    if std::env::var_os(LAUNCH_ENV).is_none() {
        return;
    }
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some((prog, rest)) = args.split_first() else {
        eprintln!("launcher: no command");
        std::process::exit(2);
    };
    let l = launch_here(Command::new(prog).args(rest).env_remove(LAUNCH_ENV));
    eprintln!(
        "{} {} {} {}",
        l.code,
        l.wall.as_nanos(),
        l.maxrss_kib,
        l.tree_kib
    );
    std::process::exit(0);
}

/// Runs `program args` from a fresh copy of this bench binary (a few MB), so the measured child's
/// peak RSS starts from the launcher's, not from the bench's (which may hold a whole test API
/// server). The child's stdout goes to `stdout` (a file, or /dev/null when None), stderr is dropped.
pub fn launch(
    program: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    stdout: Option<&Path>,
) -> Launched {
    let out = match stdout {
        Some(p) => File::create(p).expect("create the launched command's stdout file"),
        None => File::create("/dev/null").expect("open /dev/null"),
    };
    let mut cmd = Command::new(std::env::current_exe().expect("the bench binary's path"));
    cmd.env(LAUNCH_ENV, "1")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("start the launcher");
    let text = String::from_utf8_lossy(&o.stderr);
    let f: Vec<i64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "launcher said {text:?}");
    Launched {
        code: f[0] as i32,
        wall: Duration::from_nanos(f[1] as u64),
        maxrss_kib: f[2],
        tree_kib: f[3].max(f[2]),
    }
}

/// In the launcher: spawns the command, samples its process tree's RSS until wait4 reaps it.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
fn launch_here(cmd: &mut Command) -> Launched {
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the measured command");
    let pid = child.id() as libc::pid_t;
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(tree_rss_kib(pid as u32), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 reaps the child we spawned.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert_eq!(r, pid, "wait4 failed");
    Launched {
        code: ExitStatus::from_raw(status).code().unwrap_or(-1),
        wall,
        maxrss_kib: ru.ru_maxrss,
        tree_kib: peak.load(Ordering::Relaxed) as i64,
    }
}

/// Summed resident set of `pid` and all its descendants, from /proc (0 once it is gone).
fn tree_rss_kib(pid: u32) -> u64 {
    let mut todo = vec![pid];
    let mut sum = 0;
    // Bounded: a bench's tree has a handful of processes.
    for _ in 0..10_000 {
        let Some(p) = todo.pop() else { break };
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        sum += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let tasks = std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
    }
    sum
}
