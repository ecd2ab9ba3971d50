//! Certificates made in the test: a CA (a venue's private one) and server
//! certificates it signs for this machine's loopback names.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that exists only in this test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A server certificate and its key, in PEM.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
    der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `localhost`, 127.0.0.1 and ::1, with a fresh key.
    pub fn issue(&self) -> ServerCert {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut params = CertificateParams::new(names).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl ServerCert {
    /// Writes `server.crt` and `server.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        std::fs::create_dir_all(dir).expect("certificate dir");
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        // Key first, then certificate, each by rename: a watcher never sees
        // a half-written file (as a renewal tool would do it).
        for (path, text) in [(&key, &self.key_pem), (&cert, &self.cert_pem)] {
            let partial = path.with_extension("partial");
            std::fs::write(&partial, text).expect("write PEM");
            std::fs::rename(&partial, path).expect("rename PEM");
        }
        (cert, key)
    }

    /// The pin of this certificate's key (SHA-256 of its SubjectPublicKeyInfo).
    pub fn pin(&self) -> String {
        client_core::spki_sha256(&self.der).expect("a certificate")
    }
}

/// `config` serving TLS with `cert`, its files written under `dir`.
pub fn with_tls(
    mut config: sync_server::Config,
    dir: &Path,
    cert: &ServerCert,
) -> sync_server::Config {
    let (cert, key) = cert.write(dir);
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    config
}
