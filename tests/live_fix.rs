//! Live: `fix` changes real per-namespace kernel state, inside a network namespace the test creates.
//!
//! The sysctl fix also persists to /etc/sysctl.d, a real file of this machine. The test never lets it reach
//! that file: each run happens in a private mount namespace (`unshare --mount --propagation private`) where
//! the sysctl.d directories are empty tmpfs mounts, so the binary does exactly what it does on a node (same
//! code path, `--root /`), the kernel change lands in the test's network namespace, and the file change lands
//! in a tmpfs that vanishes with the mount namespace. The journal goes to a temp dir (`--journal-dir`).

mod support;

use std::{fs, path::Path};

use serde_json::Value;
use support::{Netns, bin, can_run_privileged};

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

#[test]
fn ip_forward_is_fixed_persisted_read_back_and_undone() {
    if !can_run_privileged(&["ip", "sysctl", "unshare", "mount"]) {
        return;
    }
    let host_value = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let ns = Netns::new("fx");
    ns.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=0"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().display();
    let b = bin();
    let b = b.display();
    let script = format!(
        r#"{PRIVATE_SYSCTL_D}
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
