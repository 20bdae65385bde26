//! Benchmark: parse a 20,000-rule kube-proxy ruleset and run every firewall check on it, side by side with
//! `iptables-save` printing the same ruleset from a network namespace. Each side runs as a child process;
//! wall time and peak RSS come from `wait4` rusage. Run: `cargo bench --bench firewall` (as root for the reference).

mod common;
#[path = "../tests/support/kube_proxy.rs"]
mod kube_proxy;

use std::{process::Command, time::SystemTime};

use k8sdoctor::{
    checks::firewall::{
        self, FirewallFacts, Net,
        hostnet::{Cni, NodeNet},
        iptables,
        model::{Family, Origin},
    },
    core::{
        check::{Ctx, Role},
        engine,
        source::Facts,
    },
};

const CHILD_ENV: &str = "K8SDOCTOR_FW_BENCH_INPUT";
const RUNS: usize = 5;
const RULES: usize = 20_000;

/// The measured work: parse the dump and run all firewall checks.
fn child(path: &str) {
    let text = std::fs::read_to_string(path).expect("bench input");
    let rules = iptables::parse(&text, Origin::IptablesNft, Family::Ip).expect("parse");
    let count = rules.rule_count();
    let node: Net = "192.168.1.0/24".parse().unwrap();
    let fw = FirewallFacts {
        rules: Ok(rules),
        sources: vec![format!("iptables-save: {count} rules")],
        problems: vec![],
        live: true,
        saved: None,
        iptables_backend: Some("nf_tables".into()),
        node_nets: Ok(vec![NodeNet {
            iface: "eth0".into(),
            net: node,
            addr: "192.168.1.10".parse().ok(),
        }]),
        interfaces: vec!["lo".into(), "eth0".into(), "weave".into()],
        cni: Some(Cni {
            name: "weave".into(),
            source: "bench".into(),
            pod_nets: vec!["10.32.0.0/12".parse().unwrap()],
            ifaces: vec!["weave".into()],
            bridge: "weave".into(),
            tunnel: Some("weave".into()),
        }),
        managers: vec![],
        processes: vec![],
    };
    let facts = Facts::default().with(&firewall::FIREWALL, Ok(fw));
    let ctx = Ctx {
        role: Role::ControlPlane,
        now: SystemTime::now(),
    };
    let statuses: Vec<String> = firewall::AREA
        .checks
        .iter()
        .map(|d| {
            format!(
                "{}={}",
                d.id,
                engine::evaluate(d, &facts, &ctx).status.as_str()
            )
        })
        .collect();
    println!("{count} rules: {}", statuses.join(" "));
}

/// Runs a command to completion; returns wall seconds and peak RSS in KiB.
fn measure(cmd: &mut Command) -> (f64, i64) {
    let (status, _, s) = common::run_capture(cmd);
    assert!(status.success(), "{cmd:?} failed");
    (s.wall.as_secs_f64(), s.maxrss_kib)
}

use common::median_of as median;

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = dir.path().join("kube-proxy.rules");
    std::fs::write(&generated, kube_proxy::ruleset(RULES)).unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    let ns = Ns(format!("k8sd-fwbench-{}", std::process::id()));
    let mut reference: Option<(f64, i64)> = None;
    let input = if root
        && Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .is_ok_and(|s| s.success())
    {
        let loaded = Command::new("ip")
            .args(["netns", "exec", &ns.0, "iptables-restore"])
            .stdin(std::fs::File::open(&generated).unwrap())
            .status()
            .expect("iptables-restore");
        assert!(loaded.success(), "iptables-restore failed");
        let dump = Command::new("ip")
            .args(["netns", "exec", &ns.0, "iptables-save"])
            .output()
            .unwrap();
        let dumped = dir.path().join("iptables-save.out");
        std::fs::write(&dumped, &dump.stdout).unwrap();
        let (mut walls, mut rss) = (vec![], 0);
        for _ in 0..RUNS {
            let (w, r) =
                measure(Command::new("ip").args(["netns", "exec", &ns.0, "iptables-save"]));
            walls.push(w);
            rss = rss.max(r);
        }
        reference = Some((median(walls), rss));
        dumped
    } else {
        eprintln!("reference skipped: needs root to load the ruleset into a network namespace");
        generated
    };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe).env(CHILD_ENV, &input).output().unwrap();
    eprintln!("checks: {}", String::from_utf8_lossy(&out.stdout).trim());
    let (mut walls, mut rss) = (vec![], 0);
    for _ in 0..RUNS {
        let (w, r) = measure(Command::new(&exe).env(CHILD_ENV, &input));
        walls.push(w);
        rss = rss.max(r);
    }
    let ours = (median(walls), rss);
    println!("firewall bench: {RULES}-rule kube-proxy ruleset, median of {RUNS} runs");
    println!(
        "  k8sdoctor parse + all firewall checks: {:8.1} ms  peak RSS {:6.1} MB",
        ours.0 * 1e3,
        ours.1 as f64 / 1024.0
    );
    if let Some(r) = reference {
        println!(
            "  ip netns exec NS iptables-save:        {:8.1} ms  peak RSS {:6.1} MB",
            r.0 * 1e3,
            r.1 as f64 / 1024.0
        );
        println!(
            "  ratio ours/reference: time {:.2}, peak RSS {:.2}",
            ours.0 / r.0,
            ours.1 as f64 / r.1 as f64
        );
    }
}
