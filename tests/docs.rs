//! The manual under test: README.md and docs/*.md. Every example with output runs and must match
//! what is written, every relative link resolves.
//!
//! * A ```` ```console ```` block (`$ k8sdoctor ...`, an optional `? CODE` line, then the output) is
//!   run by trycmd with the repository root as working directory, so `--root fixtures/hosts/...`
//!   works as written; `[..]` matches the rest of a line, a line `...` any number of lines.
//! * An example that needs a cluster or a network runs against the test servers instead: its block
//!   is a ```` ```shell-session ```` block (trycmd leaves those alone) right after a comment
//!   `<!-- example: SETUP -->`, where SETUP is one of [`SETUPS`]. Each is a test of its own here,
//!   with the same format and wildcards (snapbox, trycmd's matcher); its working directory holds the
//!   setup's kubeconfig as `admin.conf` and `fixtures/` of the repository.
//! * A block whose first line is `$ k8sdoctor` and that is neither is an error: no output shown in
//!   the manual goes unchecked. ```` ```sh ```` blocks are commands without output, not run.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use libtest_mimic::Trial;
use support::{
    Netns, Switch,
    apiserver::{ApiServer, Scenario},
    bin, fixtures,
    harness::{outcome, require},
    kubelet::{self, NodeSpec, ProcessKubelet},
    veth,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// One fenced block of a page.
struct Block {
    page: PathBuf,
    /// 1-based line of the opening fence.
    line: usize,
    info: String,
    /// The `<!-- example: SETUP -->` right before the fence, if any.
    setup: Option<String>,
    body: Vec<String>,
}

fn blocks(page: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(page).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let ticks = l.len() - l.trim_start_matches('`').len();
        if ticks < 3 {
            i += 1;
            continue;
        }
        let fence = &l[..ticks];
        let setup = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- example:"))
            .and_then(|r| r.strip_suffix("-->"))
            .map(|s| s.trim().to_string());
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].starts_with(fence) {
            body.push(lines[i].to_string());
            i += 1;
        }
        out.push(Block {
            page: page.to_path_buf(),
            line: start + 1,
            info: l[ticks..].trim().to_string(),
            setup,
            body,
        });
        i += 1;
    }
    out
}

fn shows_an_example(b: &Block) -> bool {
    b.body.first().is_some_and(|l| l.starts_with("$ k8sdoctor"))
}

/// The environments a `<!-- example: SETUP -->` block can name.
const SETUPS: &[&str] = &[
    "apiserver-broken",
    "fix-copy",
    "fleet",
    "fleet-multicast",
    "join-guide",
    "multicast-pair",
    "probe-3",
];

/// Examples shown with output are either trycmd's (console) or ours (a named setup); nothing else.
fn every_example_with_output_is_run() {
    let mut wrong = Vec::new();
    for page in pages() {
        for b in blocks(&page) {
            let at = format!("{}:{}", rel(&b.page), b.line);
            match (&b.setup, b.info.as_str()) {
                (Some(s), "shell-session") if SETUPS.contains(&s.as_str()) && shows_an_example(&b) => {}
                (Some(s), "shell-session") if SETUPS.contains(&s.as_str()) => {
                    wrong.push(format!("{at}: an example block must start with `$ k8sdoctor`"))
                }
                (Some(s), _) => wrong.push(format!(
                    "{at}: `<!-- example: {s} -->` must precede a ```shell-session block and name one of {SETUPS:?}"
                )),
                (None, "console") => {}
                (None, _) if shows_an_example(&b) && b.body.len() > 1 => wrong.push(format!(
                    "{at}: output of `k8sdoctor` in a ```{} block is not checked: make it ```console (run from the repository root) or a `<!-- example: SETUP -->` ```shell-session block",
                    b.info
                )),
                _ => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// trycmd runs every ```console block of README.md and docs/ from the repository root.
fn console_examples_match_against_the_fixtures() {
    let home = tempfile::tempdir().unwrap();
    let t = trycmd::TestCases::new();
    t.register_bin("k8sdoctor", bin())
        // What the examples show must not depend on who runs them: no kubeconfig of the tester's.
        .env("KUBECONFIG", "")
        .env("HOME", home.path().to_str().unwrap())
        .env("NO_COLOR", "1");
    for page in pages() {
        if blocks(&page)
            .iter()
            .any(|b| b.info == "console" && shows_an_example(b))
        {
            t.case(page);
        }
    }
    t.run();
}

/// One example for a setup: the command, the exit code, the output.
struct Example {
    at: String,
    setup: String,
    args: Vec<String>,
    code: i32,
    expected: String,
}

fn examples() -> Vec<Example> {
    let mut v = Vec::new();
    for page in pages() {
        for b in blocks(&page) {
            let Some(setup) = b.setup.clone() else {
                continue;
            };
            let mut lines = b.body.iter();
            let mut cmd = lines
                .next()
                .unwrap()
                .strip_prefix("$ ")
                .unwrap()
                .to_string();
            let mut rest: Vec<&String> = lines.collect();
            while rest.first().is_some_and(|l| l.starts_with("> ")) {
                cmd.push(' ');
                cmd.push_str(&rest.remove(0)[2..]);
            }
            let code = match rest.first().and_then(|l| l.strip_prefix("? ")) {
                Some(c) => {
                    rest.remove(0);
                    c.trim().parse().expect("`? CODE` is a number")
                }
                None => 0,
            };
            let args = shlex::split(&cmd).expect("the command line splits as a shell would");
            assert_eq!(args[0], "k8sdoctor");
            v.push(Example {
                at: format!("{}:{}", rel(&b.page), b.line),
                setup,
                args: args[1..].to_vec(),
                code,
                expected: rest.iter().map(|l| format!("{l}\n")).collect::<String>(),
            });
        }
    }
    v
}

/// Where an example runs: a working directory with `admin.conf` and `fixtures/`, and the network
/// namespace to run it in (if any). Dropping it stops the servers and removes the namespaces.
struct Place {
    dir: tempfile::TempDir,
    ns: Option<Netns>,
    _keep: Vec<Box<dyn std::any::Any>>,
}

fn place(setup: &str) -> Place {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixtures(), dir.path().join("fixtures")).unwrap();
    let conf = |server: &ApiServer| {
        let kc = server.kubeconfig(dir.path());
        std::fs::rename(kc, dir.path().join("admin.conf")).unwrap();
    };
    let host = |name: &str| fixtures().join("hosts").join(name);
    match setup {
        // The install guide's cluster, a day after kubeadm init, on 127.0.0.1.
        "apiserver-broken" => {
            let server = ApiServer::start(Scenario::broken());
            conf(&server);
            Place {
                dir,
                ns: None,
                _keep: vec![Box::new(server)],
            }
        }
        // Three nodes, each a network namespace whose pods see that node's fixture root.
        "fleet" => {
            require(&["ip"]);
            // The pods run the image's own root (its iptables/nft read the node's live rules).
            let k = Arc::new(
                ProcessKubelet::new(
                    bin(),
                    vec![
                        // cp1's running ruleset is what its saved file says (the guide's CentOS 7
                        // node); each node has its NIC on the node network.
                        NodeSpec::new("cp1", host("centos7-seed-broken"))
                            .nic("192.168.1.2/24")
                            .node_rules(
                                &std::fs::read_to_string(
                                    host("centos7-seed-broken").join("etc/sysconfig/iptables"),
                                )
                                .unwrap(),
                            ),
                        // The pods read each node's network sysctls live (--live-network): the
                        // namespaces hold what the fixtures' /proc/sys says is running.
                        NodeSpec::new("w1", host("ubuntu2204-kubeadm-healthy"))
                            .nic("192.168.1.3/24")
                            .sysctl("net.ipv4.ip_forward", "1"),
                        NodeSpec::new("w2", host("debian12-tricky"))
                            .nic("192.168.1.4/24")
                            .sysctl("net.ipv4.ip_forward", "1"),
                    ],
                )
                .image_root(support::image::rootfs()),
            );
            let server = ApiServer::start(k.scenario(Scenario::empty()));
            conf(&server);
            Place {
                dir,
                ns: None,
                _keep: vec![Box::new(server), Box::new(k)],
            }
        }
        // Three nodes on an overlay; n3's pods drop the probe's port. The CLI runs on the overlay.
        "fleet-multicast" => {
            require(&["ip", "iptables-restore"]);
            let ok = host("ubuntu2204-kubeadm-healthy");
            let drop_group = kubelet::drop_udp_port(4444);
            let (k, cp, server) = kubelet::overlay_cluster(
                ProcessKubelet::new(
                    bin(),
                    vec![
                        NodeSpec::new("n1", &ok),
                        NodeSpec::new("n2", &ok),
                        NodeSpec::new("n3", &ok).pod_rules(&drop_group),
                    ],
                )
                .image_root(support::image::rootfs())
                .pod_network(),
            );
            conf(&server);
            Place {
                dir,
                ns: Some(cp),
                _keep: vec![Box::new(server), Box::new(k)],
            }
        }
        // The guide's control plane at 192.168.1.2:6443 (its token expired), a node beside it.
        "join-guide" => {
            require(&["ip"]);
            let node = Netns::new("doc");
            let cp = Netns::new("doc");
            veth(&node, "192.168.1.10/24", &cp, "192.168.1.2/24");
            let server = ApiServer::start_in_at(
                Scenario::broken(),
                &cp,
                "192.168.1.2:6443".parse().unwrap(),
            );
            Place {
                dir,
                ns: Some(node),
                _keep: vec![Box::new(server), Box::new(cp)],
            }
        }
        // A copy of the fix fixture at node/, for `fix --root node --apply`.
        "fix-copy" => {
            let o = Command::new("cp")
                .arg("-a")
                .arg(host("centos7-fix-broken"))
                .arg(dir.path().join("node"))
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "cp: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            Place {
                dir,
                ns: None,
                _keep: vec![],
            }
        }
        // Two namespaces on a switch: 10.77.0.1 sends 3 datagrams after a moment, 10.77.0.2 runs
        // the example.
        "multicast-pair" => {
            require(&["ip"]);
            let (sw, a, b) = lan(2);
            let sender = Background(
                a.command("sh")
                    .arg("-c")
                    .arg(format!(
                        "sleep 0.5; exec {} multicast send -c 3 -P 200 -q",
                        bin().display()
                    ))
                    .spawn()
                    .unwrap(),
            );
            let b = b.into_iter().next().unwrap();
            Place {
                dir,
                ns: Some(b),
                _keep: vec![Box::new(sender), Box::new(a), Box::new(sw)],
            }
        }
        // Three participants on a switch, the third dropping UDP 4444; the example runs on the first
        // while the same probe runs on the other two.
        "probe-3" => {
            require(&["ip", "iptables"]);
            let (sw, a, mut rest) = lan(3);
            rest[1].exec(&[
                "iptables", "-A", "INPUT", "-p", "udp", "--dport", "4444", "-j", "DROP",
            ]);
            let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
            for ns in &rest {
                keep.push(Box::new(Background(
                    ns.command(bin().to_str().unwrap())
                        .args([
                            "multicast",
                            "probe",
                            "--peers",
                            "10.77.0.1,10.77.0.2,10.77.0.3",
                        ])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap(),
                )));
            }
            keep.extend(
                rest.drain(..)
                    .map(|n| Box::new(n) as Box<dyn std::any::Any>),
            );
            keep.push(Box::new(sw));
            Place {
                dir,
                ns: Some(a),
                _keep: keep,
            }
        }
        other => panic!("no setup {other:?} (one of {SETUPS:?})"),
    }
}

/// A process the setup started beside the example; killed and reaped when the place goes.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` namespaces on one switch at 10.77.0.1.. (/24): the first, and the others.
fn lan(n: u8) -> (Switch, Netns, Vec<Netns>) {
    let sw = Switch::new("doc");
    let all: Vec<Netns> = (1..=n)
        .map(|i| {
            let ns = Netns::new("doc");
            let ifname = sw.plug(&ns, &format!("10.77.0.{i}/24"));
            ns.exec(&["ip", "route", "add", "224.0.0.0/4", "dev", &ifname]);
            ns
        })
        .collect();
    let mut it = all.into_iter();
    let first = it.next().unwrap();
    (sw, first, it.collect())
}

fn run_example(ex: &Example) {
    let p = place(&ex.setup);
    let mut c = match &p.ns {
        Some(ns) => ns.command(bin().to_str().unwrap()),
        None => Command::new(bin()),
    };
    let out = c
        .args(&ex.args)
        .current_dir(p.dir.path())
        .env_remove("KUBECONFIG")
        .env("HOME", p.dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(ex.code),
        "{}: exit code\nstdout:\n{stdout}\nstderr:\n{stderr}",
        ex.at
    );
    if std::env::var_os("K8SDOCTOR_DOCS_OVERWRITE").is_some() {
        overwrite(ex, &stdout);
        return;
    }
    // Unlike trycmd's, this comparison keeps backslashes as they are (a diff's `\ No newline`).
    if let Err(e) = snapbox::Assert::new().normalize_paths(false).try_eq(
        None,
        snapbox::Data::text(stdout.clone()),
        snapbox::Data::text(ex.expected.clone()),
    ) {
        panic!(
            "{}: the output differs from the page\n{e}\nthe program printed:\n{stdout}",
            ex.at
        );
    }
}

/// `K8SDOCTOR_DOCS_OVERWRITE=1`: writes what the program printed into the page, under the example's
/// command (as `TRYCMD=overwrite` does for console blocks); put the wildcards back by hand.
fn overwrite(ex: &Example, stdout: &str) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let (page, line) = ex.at.rsplit_once(':').unwrap();
    let path = repo().join(page);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // The page may have grown above this block since the examples were read: find it by its text.
    let marker = format!("<!-- example: {} -->", ex.setup);
    let want: usize = line.parse().unwrap();
    let start = (0..lines.len())
        .filter(|&i| i > 0 && lines[i - 1].trim() == marker && lines[i].starts_with("```"))
        .filter(|&i| {
            lines.get(i + 1).is_some_and(|l| {
                shlex::split(l.trim_start_matches("$ ")).is_some_and(|a| a[1..] == ex.args[..])
            })
        })
        .min_by_key(|&i| i.abs_diff(want - 1))
        .expect("the example's block");
    let mut body = start + 2;
    while lines[body].starts_with("> ") || lines[body].starts_with("? ") {
        body += 1;
    }
    let end = (body..lines.len())
        .find(|&i| lines[i].starts_with("```"))
        .unwrap();
    lines.splice(body..end, stdout.lines().map(String::from));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// The anchors GitHub gives a page's headings: lowercase, punctuation other than `-` and `_`
/// dropped, spaces as `-`.
fn anchors(page: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(page) else {
        return Vec::new();
    };
    let mut in_fence = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_fence = !in_fence;
            }
            !in_fence && l.starts_with('#')
        })
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// Every relative link of README.md and docs/ names a file or directory that exists, and a heading
/// of that page when it names an anchor.
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let mut in_fence = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            if in_fence {
                continue;
            }
            // Code spans are not links.
            let prose: String = line
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 0)
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join(" ");
            for (i, _) in prose.match_indices("](") {
                let rest = &prose[i + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                let target = target.trim_matches(|c| c == '<' || c == '>');
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let path = match file {
                    "" => page.clone(),
                    f => page.parent().unwrap().join(f),
                };
                let anchor_missing = !anchor.is_empty()
                    && path.extension().is_some_and(|e| e == "md")
                    && !anchors(&path).iter().any(|a| a == anchor);
                if !path.exists() || anchor_missing {
                    broken.push(format!("{}:{}: {target}", rel(&page), n + 1));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links that resolve to nothing:\n{}",
        broken.join("\n")
    );
}

fn main() {
    let mut trials = vec![
        trial!(every_example_with_output_is_run),
        trial!(console_examples_match_against_the_fixtures),
        trial!(every_relative_link_resolves),
    ];
    for ex in examples() {
        let name = format!("example {} ({})", ex.at, ex.setup);
        trials.push(Trial::ignorable_test(name, move || {
            outcome(|| run_example(&ex))
        }));
    }
    support::harness::main(trials);
}
