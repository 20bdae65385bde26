//! CLI: `multicast` refuses bad input with exit 2 and a clear message, before touching the network.
//! Every case here fails validation before a socket is opened, so nothing is sent from the host's
//! namespace (the "no local peer" case runs in a namespace, in live_multicast.rs).

mod support;

use assert_cmd::Command;
use support::bin;

fn fails_with(args: &[&str], message: &str) {
    let out = Command::new(bin())
        .arg("multicast")
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "stdout is for the report only");
}

#[test]
fn bad_input_exits_2() {
    let many: Vec<String> = (1..=49).map(|i| format!("192.0.2.{i}")).collect();
    fails_with(&["probe", "--peers", &many.join(",")], "at most 48");
    fails_with(
        &["send", "--group", "10.1.1.1", "--count", "1"],
        "is not a multicast address",
    );
    fails_with(
        &["receive", "--interface", "no-such-if0", "--count", "1"],
        "no interface has that name or address",
    );
    fails_with(
        &["send", "--interval=-5", "--count", "1"],
        "--interval must be",
    );
    fails_with(
        &["probe", "--peers", "192.0.2.1"],
        "at least two distinct addresses",
    );
    fails_with(
        &["probe", "--peers", "192.0.2.1,192.0.2.1"],
        "at least two distinct addresses",
    );
    fails_with(
        &["probe", "--peers", "192.0.2.1,2001:db8::1"],
        "same address family",
    );
    fails_with(
        &[
            "probe",
            "--peers",
            "192.0.2.1,192.0.2.2",
            "--max-loss",
            "150",
        ],
        "--max-loss",
    );
    fails_with(
        &[
            "probe",
            "--peers",
            "192.0.2.1,192.0.2.2",
            "--local",
            "192.0.2.3",
        ],
        "is not one of --peers",
    );
    fails_with(
        &["probe", "--peers", "192.0.2.1,192.0.2.2", "--soak", "0"],
        "--soak must be",
    );
}

#[test]
fn mtools_flags_and_links_reach_the_same_validation() {
    // -g is msend's group flag; -text (single dash) takes a value that starts with a dash.
    fails_with(
        &["send", "-text", "-x", "-g", "10.1.1.1", "-c", "1"],
        "is not a multicast address",
    );
    fails_with(
        &["receive", "-n", "-q", "-I", "no-such-if0"],
        "no interface has that name or address",
    );
    let dir = tempfile::tempdir().unwrap();
    for (tool, args, message) in [
        (
            "msend",
            &["-g", "10.1.1.1", "-c", "1"][..],
            "is not a multicast address",
        ),
        (
            "mreceive",
            &["-I", "no-such-if0"][..],
            "no interface has that name or address",
        ),
        ("mreceive", &["-text", "x"][..], "unexpected argument"),
    ] {
        let link = dir.path().join(tool);
        if !link.exists() {
            std::os::unix::fs::symlink(bin(), &link).unwrap();
        }
        let out = Command::new(&link).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tool} {args:?}: {stderr}");
        assert!(stderr.contains(message), "{tool} {args:?}: {stderr}");
    }
    // The help names mtools' spellings.
    let help = Command::new(dir.path().join("msend"))
        .arg("-h")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success()
            && text.contains("-text TEXT")
            && text.contains("Usage: k8sdoctor multicast send"),
        "{text}"
    );
}
