//! Benchmark: the default node check set on a fixture root, against `cat` of the same files, in one run.
//!
//! The two commands run interleaved (in alternating order), so a change in the machine's load during the
//! run weighs on both alike; each round gives a ratio of its own, and the bench prints the median and
//! spread of each command and of the ratios, the CPU time each used (which waiting for a CPU on a loaded
//! machine does not add to), with the load average before and after. With `strace` installed it also
//! counts the system calls and threads of one run of each. `K8SDOCTOR_BENCH_ROUNDS` sets the rounds,
//! `K8SDOCTOR_BENCH_BIN` measures another k8sdoctor binary (a before/after in the same harness).

mod common;

use std::{path::Path, process::Command, time::Duration};

/// Rounds (one run of each command per round); `K8SDOCTOR_BENCH_ROUNDS` overrides.
const ROUNDS: usize = 401;

fn files_under(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p.display().to_string());
        }
    }
}

/// The value at quantile `q` (0..=1) of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// "median (p10–p90)" of the values, scaled.
fn spread(mut v: Vec<f64>, scale: f64, unit: &str) -> (f64, String) {
    v.sort_by(|a, b| a.total_cmp(b));
    let m = quantile(&v, 0.5);
    (
        m,
        format!(
            "median {:.2}{unit} (p10 {:.2}, p90 {:.2})",
            m * scale,
            quantile(&v, 0.1) * scale,
            quantile(&v, 0.9) * scale
        ),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// System calls (total, and of `name`) and threads (clone calls) of one run under `strace -f -c`.
fn syscalls(cmd: &mut Command, name: &str) -> Option<(u64, u64, u64)> {
    let out = std::env::temp_dir().join(format!("k8sdoctor-bench-strace-{}", std::process::id()));
    let mut s = Command::new("strace");
    s.args(["-f", "-qq", "-c", "-o"])
        .arg(&out)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    s.status().ok()?;
    let text = std::fs::read_to_string(&out).ok()?;
    let _ = std::fs::remove_file(&out);
    // Rows: % time, seconds, usecs/call, calls, [errors], syscall.
    let calls = |row: &str| -> Option<(u64, String)> {
        let f: Vec<&str> = row.split_whitespace().collect();
        Some((f.get(3)?.parse().ok()?, f.last()?.to_string()))
    };
    let rows: Vec<(u64, String)> = text.lines().filter_map(calls).collect();
    let total = rows.iter().find(|(_, n)| n == "total")?.0;
    let of = |want: &str| rows.iter().filter(|(_, n)| n == want).map(|(c, _)| c).sum();
    Some((total, of(name), of("clone") + of("clone3")))
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hosts/centos7-seed-broken");
    // An installed copy, as a node runs it (and as `cat` is): the linker's own output file sits in the
    // page cache in pieces that cost more to map, which moved the result by up to 0.5x from build to
    // build of the same code.
    let installed = tempfile::tempdir().expect("a temporary directory");
    let bin = installed.path().join("k8sdoctor");
    // K8SDOCTOR_BENCH_BIN measures another build (an older one, for a before/after in this harness).
    let built = std::env::var("K8SDOCTOR_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_k8sdoctor").to_string());
    std::fs::copy(&built, &bin).expect("copy the k8sdoctor binary");
    let bin = bin.as_path();
    let rounds = std::env::var("K8SDOCTOR_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
        .max(11);
    let mut files = Vec::new();
    files_under(&root, &mut files);
    let ours = || {
        let mut c = Command::new(bin);
        c.args(["--root", root.to_str().unwrap(), "-o", "json", "--offline"]);
        c.env_remove("KUBECONFIG");
        c
    };
    let cat = || {
        let mut c = Command::new("cat");
        c.args(&files);
        c
    };
    let load_before = loadavg();
    // Warm the page cache and both binaries.
    for _ in 0..10 {
        common::run_once(&mut ours());
        common::run_once(&mut cat());
    }
    let (mut ours_ms, mut cat_ms, mut ratios, mut rss) = (vec![], vec![], vec![], vec![]);
    let (mut ours_cpu, mut cat_cpu) = (vec![], vec![]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for round in 0..rounds {
        // Alternate which goes first, so neither always follows the other.
        let (o, c) = if round % 2 == 0 {
            let o = common::run_once(&mut ours());
            (o, common::run_once(&mut cat()))
        } else {
            let c = common::run_once(&mut cat());
            (common::run_once(&mut ours()), c)
        };
        ours_ms.push(ms(o.wall));
        cat_ms.push(ms(c.wall));
        ratios.push(o.wall.as_secs_f64() / c.wall.as_secs_f64());
        rss.push((o.maxrss_kib as f64 / 1024.0, c.maxrss_kib as f64 / 1024.0));
        ours_cpu.push(ms(o.cpu));
        cat_cpu.push(ms(c.cpu));
    }
    let load_after = loadavg();
    println!(
        "host checks on {} ({} files), {rounds} interleaved rounds; load average {load_before} before, {load_after} after",
        root.display(),
        files.len()
    );
    let (ours_median, ours_text) = spread(ours_ms, 1.0, " ms");
    let (cat_median, cat_text) = spread(cat_ms, 1.0, " ms");
    let (_, ratio_text) = spread(ratios, 1.0, "x");
    let (ours_rss, _) = spread(rss.iter().map(|r| r.0).collect(), 1.0, "");
    let (cat_rss, _) = spread(rss.iter().map(|r| r.1).collect(), 1.0, "");
    let (ours_cpu, _) = spread(ours_cpu, 1.0, "");
    let (cat_cpu, _) = spread(cat_cpu, 1.0, "");
    println!("k8sdoctor check: {ours_text}, CPU {ours_cpu:.2} ms, peak RSS {ours_rss:.1} MB");
    println!("cat:             {cat_text}, CPU {cat_cpu:.2} ms, peak RSS {cat_rss:.1} MB");
    println!(
        "ratio time {:.2}x (of the medians); per round: {ratio_text}; CPU time {:.2}x; RSS {:.2}x",
        ours_median / cat_median,
        ours_cpu / cat_cpu,
        ours_rss / cat_rss
    );
    match (
        syscalls(&mut ours(), "openat2"),
        syscalls(&mut cat(), "openat"),
    ) {
        (Some((ours_total, opens, threads)), Some((cat_total, cat_opens, _))) => println!(
            "system calls of one run (strace -f -c): k8sdoctor {ours_total} ({opens} openat2, {threads} threads started), cat {cat_total} ({cat_opens} openat) for {} files",
            files.len()
        ),
        _ => println!("system calls: not counted (no strace)"),
    }
    println!(
        "targets: <= 5 ms ({}), <= 10 MB ({}), <= 2x cat ({})",
        if ours_median <= 5.0 { "met" } else { "MISSED" },
        if ours_rss <= 10.0 { "met" } else { "MISSED" },
        if ours_median <= 2.0 * cat_median {
            "met"
        } else {
            "MISSED"
        }
    );
}
