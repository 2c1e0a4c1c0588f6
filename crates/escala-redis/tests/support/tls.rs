//! Test support for `rediss://`: a CA, a server certificate it signs (for 127.0.0.1 and
//! localhost) and an unrelated CA, made with `rcgen` and written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// The PEM files of one test PKI.
pub(crate) struct TlsFiles {
    /// The CA that signed the server's certificate.
    pub(crate) ca: PathBuf,
    /// A CA that signed nothing the server has.
    pub(crate) wrong_ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("a self-signed CA").pem();
    (params, key, pem)
}

/// Makes the files in `dir`.
pub(crate) fn make(dir: &Path) -> TlsFiles {
    let (ca_params, ca_key, ca_pem) = ca("escala test CA");
    let (_, _, wrong_pem) = ca("some other CA");
    let key = KeyPair::generate().expect("a server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, "escala test redis");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).expect("a server certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        wrong_ca: dir.join("wrong-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.ca, ca_pem).unwrap();
    std::fs::write(&files.wrong_ca, wrong_pem).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    files
}
