//! Certificates in discovery: the CA pin (SHA-256 of the DER SubjectPublicKeyInfo, as kubeadm's
//! `pubkeypin.Hash`), one-line descriptions for evidence, and verifying the server's chain against
//! the CA from cluster-info with rustls' own WebPKI verifier.

use std::sync::Arc;

use ring::digest;
use rustls::{
    CertificateError, RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::token::CaHash;

/// A certificate, parsed enough for pinning and evidence.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: CertificateDer<'static>,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo.
    pub pin: CaHash,
    /// `CN=kubernetes, RSA 2048, valid 2026-11-24T15:54:10Z..2036-11-22T15:54:10Z`.
    pub summary: String,
    pub not_before: i64,
    pub not_after: i64,
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

impl Cert {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Cert, String> {
        let (_, x) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let spki = x.public_key();
        let pin = CaHash(lower_hex(
            digest::digest(&digest::SHA256, spki.raw).as_ref(),
        ));
        let key = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(k)) => format!("RSA {}", k.key_size()),
            Ok(x509_parser::public_key::PublicKey::EC(k)) => format!("ECDSA {}", k.key_size()),
            _ => format!("key {}", spki.algorithm.algorithm),
        };
        let v = x.validity();
        let (not_before, not_after) = (v.not_before.timestamp(), v.not_after.timestamp());
        Ok(Cert {
            der: CertificateDer::from(der.to_vec()),
            pin,
            summary: format!(
                "{}, {key}, valid {}..{}",
                x.subject(),
                rfc3339(not_before),
                rfc3339(not_after)
            ),
            not_before,
            not_after,
        })
    }

    /// Parses a PEM bundle (kubeconfig `certificate-authority-data`, decoded); at least one certificate.
    pub fn from_pem_bundle(pem: &[u8]) -> Result<Vec<Cert>, String> {
        let ders = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the CA data is not valid PEM: {e}"))?;
        if ders.is_empty() {
            return Err("the CA data holds no PEM CERTIFICATE block".into());
        }
        ders.iter().map(|d| Cert::from_der(d)).collect()
    }
}

/// The first CA whose pin is in `pins`, as kubeadm's `pubkeypin.Set.CheckAny`.
pub fn matching<'a>(cas: &'a [Cert], pins: &[CaHash]) -> Option<&'a Cert> {
    cas.iter().find(|c| pins.contains(&c.pin))
}

/// Verifies the server's presented chain against `cas` for the name or IP the join command dials,
/// as kubeadm's second, CA-verified request to the API server does.
pub fn verify_chain(
    cas: &[Cert],
    chain: &[CertificateDer<'static>],
    host: &str,
    now: UnixTime,
) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.der.clone())
            .map_err(|e| format!("the CA cannot be used as a trust anchor: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("cannot build a verifier for the CA: {e}"))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or("the server presented no certificate")?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a valid server name: {e}"))?;
    match verifier.verify_server_cert(leaf, intermediates, &name, &[], now) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(e)) => Err(match e {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                "the server's certificate is not signed by the CA from cluster-info ({e}): another server (or a proxy) answers on this endpoint"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate does not name {host} ({e}): add it to the API server certificate's SANs (kubeadm init --apiserver-cert-extra-sans) or join through a name it has"
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => format!(
                "the server's certificate is outside its validity period here ({e}): check this node's clock, or renew with kubeadm certs renew"
            ),
            e => format!("the server's chain does not verify against the CA: {e}"),
        }),
        Err(e) => Err(format!(
            "the server's chain does not verify against the CA: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_reported_not_panicked_on() {
        assert!(
            Cert::from_pem_bundle(b"hello")
                .unwrap_err()
                .contains("no PEM")
        );
        let bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(
            Cert::from_pem_bundle(bad)
                .unwrap_err()
                .contains("not an X.509")
        );
        assert!(Cert::from_der(&[0x30, 0x03, 0x02, 0x01]).is_err());
        let e = verify_chain(&[], &[], "127.0.0.1", UnixTime::now()).unwrap_err();
        assert!(
            e.contains("no certificate") || e.contains("verifier"),
            "{e}"
        );
    }
}
