//! Live: `fix` changes real per-namespace kernel state, inside a network namespace the test creates.
//!
//! The sysctl fix also persists to /etc/sysctl.d, a real file of this machine. The test never lets it reach
//! that file: each run happens in a private mount namespace (`unshare --mount --propagation private`) where
//! the sysctl.d directories are empty tmpfs mounts, so the binary does exactly what it does on a node (same
//! code path, `--root /`), the kernel change lands in the test's network namespace, and the file change lands
//! in a tmpfs that vanishes with the mount namespace. The journal goes to a temp dir (`--journal-dir`).

mod support;

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Netns, bin,
    harness::{join, require},
    in_netns, veth,
};

/// Hides this machine's saved firewall rules from the commands that follow, in their mount namespace only.
const PRIVATE_RULES_FILES: &str = r#"
set -e
for d in /etc/sysconfig /etc/iptables; do
  if [ -d "$d" ]; then mount -t tmpfs k8sdoctor-test "$d"; fi
done
"#;

/// Hides this machine's sysctl configuration from the commands that follow, in their mount namespace only.
const PRIVATE_SYSCTL_D: &str = r#"
set -e
[ -d /etc/sysctl.d ] || { echo "/etc/sysctl.d is missing: cannot shadow it" >&2; exit 97; }
for d in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
  if [ -d "$d" ]; then mount -t tmpfs k8sdoctor-test "$d"; fi
done
if [ -f /etc/sysctl.conf ]; then mount --bind /dev/null /etc/sysctl.conf; fi
"#;

fn read_json(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", p.display()))
}

fn ip_forward_is_fixed_persisted_read_back_and_undone() {
    require(&["ip", "sysctl", "unshare", "mount"]);
    let host_value = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let ns = Netns::new("fx");
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let b = bin();
    let b = b.display();
    let script = format!(
        r#"{PRIVATE_SYSCTL_D}
K8SDOCTOR_FIX_FAULT_AFTER=1 "{b}" fix sysctl.ip-forward --apply --yes --journal-dir "{w}/journal" -o json > "{w}/fault.json" && echo 0 > "{w}/fault.rc" || echo $? > "{w}/fault.rc"
sysctl -n net.ipv4.ip_forward > "{w}/after-fault"
ls -A /etc/sysctl.d > "{w}/left-after-fault"
"{b}" fix sysctl.ip-forward --apply --yes --journal-dir "{w}/journal" -o json > "{w}/apply.json" || echo $? > "{w}/apply.rc"
sysctl -n net.ipv4.ip_forward > "{w}/live"
cat /etc/sysctl.d/99-kubernetes.conf > "{w}/persisted"
"{b}" --only sysctl.ip-forward -o json > "{w}/check.json" || true
"{b}" fix --undo --yes --journal-dir "{w}/journal" -o json > "{w}/undo.json" || echo $? > "{w}/undo.rc"
sysctl -n net.ipv4.ip_forward > "{w}/after-undo"
ls -A /etc/sysctl.d > "{w}/left"
"#
    );
    let o = ns
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = |n: &str| work.path().join(n);
    assert!(
        !p("apply.rc").exists(),
        "apply failed: {}",
        fs::read_to_string(p("apply.json")).unwrap_or_default()
    );

    // A fault after the runtime step: the run is rolled back, the kernel value included, and exits 1.
    assert_eq!(fs::read_to_string(p("fault.rc")).unwrap().trim(), "1");
    let fault = read_json(&p("fault.json"));
    assert_eq!(fault["outcome"], "rolled_back", "{fault:#}");
    assert_eq!(fault["fixes"][0]["steps"][0]["state"], "rolled_back");
    assert_eq!(fs::read_to_string(p("after-fault")).unwrap().trim(), "0");
    assert_eq!(fs::read_to_string(p("left-after-fault")).unwrap(), "");

    let apply = read_json(&p("apply.json"));
    assert_eq!(apply["outcome"], "applied", "{apply:#}");
    let steps = apply["fixes"][0]["steps"].as_array().unwrap();
    assert_eq!(steps[0]["preview"], "$ sysctl -w net.ipv4.ip_forward=1");
    assert_eq!(steps[0]["state"], "applied");
    assert_eq!(steps[1]["state"], "applied");
    assert_eq!(apply["verify"][0]["before"], "fail");
    assert_eq!(apply["verify"][0]["after"], "pass", "{apply:#}");
    // Read back: the kernel value of the namespace, the persisted file, and the check run on its own.
    assert_eq!(fs::read_to_string(p("live")).unwrap().trim(), "1");
    assert_eq!(
        fs::read_to_string(p("persisted")).unwrap(),
        "net.ipv4.ip_forward = 1\n"
    );
    assert_eq!(read_json(&p("check.json"))["results"][0]["status"], "pass");

    assert!(
        !p("undo.rc").exists(),
        "undo failed: {}",
        fs::read_to_string(p("undo.json")).unwrap_or_default()
    );
    assert_eq!(read_json(&p("undo.json"))["outcome"], "undone");
    assert_eq!(fs::read_to_string(p("after-undo")).unwrap().trim(), "0");
    assert_eq!(
        fs::read_to_string(p("left")).unwrap(),
        "",
        "undo removes the file it created"
    );
    // This machine's own namespace was never touched.
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_value
    );
}

/// CentOS 7's stock /etc/sysconfig/iptables (iptables-services).
const CENTOS7_RULES: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT
-A INPUT -j REJECT --reject-with icmp-host-prohibited
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
COMMIT
";

const SERVER: &str = "10.213.7.1";

/// One bounded connection attempt from the client namespace to the kubelet port; `Ok` when a byte came back.
fn connect(client: &Netns) -> Result<(), String> {
    join(in_netns(client, || {
        let addr: SocketAddr = format!("{SERVER}:10250").parse().unwrap();
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        (b == *b"ok")
            .then_some(())
            .ok_or_else(|| format!("got {b:?}"))
    }))
}

/// `k8sdoctor ARGS` inside the server namespace and a private mount namespace without this machine's rules files.
fn doctor(server: &Netns, args: &str) -> Value {
    let b = bin();
    let script = format!("{PRIVATE_RULES_FILES}\nexec \"{}\" {args}", b.display());
    let o = server
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn iptables_input(ns: &Netns) -> Vec<String> {
    let o = ns.exec(&["iptables", "-S", "INPUT"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn nft_input(ns: &Netns) -> Vec<String> {
    let o = ns.exec(&["nft", "list", "chain", "inet", "filter", "input"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// A firewalld-like nftables input chain that rejects what it does not accept.
const NFT_RULES: &str = "table inet filter {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname \"lo\" accept
    tcp dport 22 accept
    reject with icmpx type admin-prohibited
  }
}
";

fn load(ns: &Netns, program: &[&str], rules: &str) {
    let mut c = ns.command(program[0]);
    c.args(&program[1..]).stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "{program:?} failed");
}

/// Loads a ruleset that rejects the kubelet port, fixes it, proves a real connection then succeeds, undoes it.
fn kubelet_port_is_opened(setup: impl Fn(&Netns), listing: fn(&Netns) -> Vec<String>, kind: &str) {
    let server = Netns::new("fx");
    let client = Netns::new("fx");
    veth(&server, &format!("{SERVER}/24"), &client, "10.213.7.2/24");
    setup(&server);

    // A listener on the kubelet port, answering "ok" until the test ends (bounded: 60 s at most).
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let listener = in_netns(&server, move || {
        let l = TcpListener::bind(format!("{SERVER}:10250")).unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"ok");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });

    let refused = connect(&client);
    assert!(
        refused.is_err(),
        "the REJECT should refuse the connection before the fix"
    );
    let work = tempfile::tempdir().unwrap();
    let jd = work.path().display();
    let apply = doctor(
        &server,
        &format!("fix firewall.kubelet-port --apply --yes --journal-dir {jd} -o json"),
    );
    assert_eq!(apply["outcome"], "applied", "{apply:#}");
    let step = &apply["fixes"][0]["steps"][0];
    assert_eq!(
        (step["kind"].as_str(), step["state"].as_str()),
        (Some(kind), Some("applied")),
        "{apply:#}"
    );
    assert_eq!(apply["verify"][0]["after"], "pass", "{apply:#}");

    // The ACCEPT sits right before the REJECT, and a real connection now gets through.
    let rules = listing(&server);
    let accept = rules
        .iter()
        .position(|r| r.contains("10250") && r.to_lowercase().contains("accept"));
    let reject = rules
        .iter()
        .position(|r| r.to_lowercase().contains("reject"));
    assert_eq!(accept.map(|a| a + 1), reject, "{rules:#?}");
    connect(&client).unwrap();
    let check = doctor(&server, "--only firewall.kubelet-port -o json");
    assert_eq!(check["results"][0]["status"], "pass", "{check:#}");
    let again = doctor(
        &server,
        &format!("fix firewall.kubelet-port --apply --yes --journal-dir {jd} -o json"),
    );
    assert_eq!(
        again["fixes"][0]["steps"].as_array().unwrap().len(),
        0,
        "{again:#}"
    );
    assert_eq!(listing(&server), rules, "a second apply adds nothing");

    // Undo deletes exactly that rule: the REJECT decides again.
    let undo = doctor(
        &server,
        &format!("fix --undo --yes --journal-dir {jd} -o json"),
    );
    assert_eq!(undo["outcome"], "undone", "{undo:#}");
    assert!(!listing(&server).iter().any(|r| r.contains("10250")));
    assert!(connect(&client).is_err());
    stop.store(true, Ordering::SeqCst);
    join(listener);
}

fn the_firewall_fix_opens_the_kubelet_port_on_centos7_rules() {
    require(&[
        "ip",
        "iptables",
        "iptables-restore",
        "iptables-save",
        "nft",
        "unshare",
        "mount",
    ]);
    kubelet_port_is_opened(
        |ns| load(ns, &["iptables-restore"], CENTOS7_RULES),
        iptables_input,
        "rule",
    );
}

fn the_firewall_fix_opens_the_kubelet_port_in_an_nftables_chain() {
    require(&["ip", "iptables-save", "nft", "unshare", "mount"]);
    kubelet_port_is_opened(
        |ns| load(ns, &["nft", "-f", "-"], NFT_RULES),
        nft_input,
        "nft_rule",
    );
}

fn main() {
    support::harness::main(vec![
        trial!(ip_forward_is_fixed_persisted_read_back_and_undone),
        trial!(the_firewall_fix_opens_the_kubelet_port_on_centos7_rules),
        trial!(the_firewall_fix_opens_the_kubelet_port_in_an_nftables_chain),
    ]);
}
