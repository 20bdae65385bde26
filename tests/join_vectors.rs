//! join-check's crypto against vectors computed independently with the `openssl` CLI at test time:
//! the CA pin (SHA-256 of the DER SubjectPublicKeyInfo) for an RSA and an ECDSA CA, and the
//! detached HS256 JWS kubeadm's bootstrap signer puts in cluster-info.

mod support;

use std::path::Path;

use k8sdoctor::join::{Cert, Token, detached_signature};
use support::openssl::{ca_pin as openssl_pin, openssl};

/// A self-signed CA made by openssl: `kind` is `rsa:2048` or `ec`.
fn make_ca(dir: &Path, kind: &str) -> Vec<u8> {
    let key = dir.join(format!("{}.key", kind.replace(':', "")));
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "3650",
        "-subj",
        "/CN=kubernetes",
        "-keyout",
        key.to_str().unwrap(),
    ];
    if kind == "ec" {
        args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    } else {
        args.extend(["-newkey", kind]);
    }
    openssl(&args, b"")
}

#[test]
fn ca_pins_match_openssl_for_rsa_and_ecdsa() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["rsa:2048", "ec"] {
        let pem = make_ca(dir.path(), kind);
        let want = openssl_pin(&pem);
        let certs = Cert::from_pem_bundle(&pem).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].pin.to_string(), want, "{kind}");
        let key = if kind == "ec" {
            "ECDSA 256"
        } else {
            "RSA 2048"
        };
        assert!(certs[0].summary.contains(key), "{}", certs[0].summary);
        assert!(
            certs[0].summary.contains("CN=kubernetes"),
            "{}",
            certs[0].summary
        );
    }
    // A bundle: both CAs, each with its own pin.
    let rsa = make_ca(dir.path(), "rsa:2048");
    let ec = make_ca(dir.path(), "ec");
    let bundle = [rsa.clone(), ec.clone()].concat();
    let pins: Vec<String> = Cert::from_pem_bundle(&bundle)
        .unwrap()
        .iter()
        .map(|c| c.pin.to_string())
        .collect();
    assert_eq!(pins, [openssl_pin(&rsa), openssl_pin(&ec)]);
}

fn b64url(bytes: &[u8]) -> String {
    let b64 = openssl(&["base64", "-A"], bytes);
    String::from_utf8(b64)
        .unwrap()
        .trim()
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[test]
fn the_jws_matches_openssl_hmac() {
    let kubeconfig = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0tLS1CRUdJTi\n    server: https://192.168.1.2:6443\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n";
    for (id, secret) in [
        ("a24a11", "0e6b932b0907deff"),
        ("abcdef", "0123456789abcdef"),
    ] {
        let header = b64url(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#).as_bytes());
        let input = format!("{header}.{}", b64url(kubeconfig.as_bytes()));
        let mac = openssl(
            &["dgst", "-sha256", "-hmac", secret, "-binary"],
            input.as_bytes(),
        );
        let want = format!("{header}..{}", b64url(&mac));
        let token = Token::parse(&format!("{id}.{secret}")).unwrap();
        assert_eq!(detached_signature(kubeconfig, &token), Some(want));
    }
}
