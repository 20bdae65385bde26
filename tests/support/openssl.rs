//! The `openssl` CLI as an independent oracle: test vectors computed at test time, not by our code.

use std::{
    io::Write,
    process::{Command, Stdio},
};

/// Runs `openssl args` with `stdin`; panics with its stderr when it fails.
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is installed (.ci/run installs it)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A CA's `--discovery-token-ca-cert-hash` as kubeadm's docs compute it:
/// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256`.
pub fn ca_pin(ca_pem: &[u8]) -> String {
    let pubkey = openssl(&["x509", "-pubkey", "-noout"], ca_pem);
    let der = openssl(&["pkey", "-pubin", "-outform", "der"], &pubkey);
    let dgst = String::from_utf8(openssl(&["dgst", "-sha256", "-r"], &der)).unwrap();
    format!("sha256:{}", dgst.split_whitespace().next().unwrap())
}
