//! TLS for every connection the library makes: the sign-in API (`https://`)
//! and the sync socket (`wss://`) share one rustls configuration, so both
//! trust exactly the same servers.
//!
//! Trust is the platform's root certificates, plus the CA of a venue's own
//! network when one is given, and optionally a pin of the server's key. A
//! certificate that fails any of these is an error the caller can tell apart
//! ([`untrusted_reason`]); there is never a fallback to cleartext.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// Which servers this device trusts. The default is the platform's roots only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTrust {
    extra_roots: Vec<CertificateDer<'static>>,
    pins: Vec<[u8; 32]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("the CA certificate is not valid PEM: {0}")]
    BadPem(String),
    #[error("the CA PEM holds no certificate")]
    NoCertificate,
    #[error(
        "the pinned key {0:?} is not a SHA-256 of a public key (base64, optionally `sha256//...`, or 64 hex digits)"
    )]
    BadPin(String),
    #[error("no trusted root certificates: the platform has none and no CA was given")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Setup(String),
}

impl ServerTrust {
    /// Also trusts the CA certificates in `pem` (a venue's private CA).
    pub fn with_extra_ca_pem(mut self, pem: &str) -> Result<Self, TrustError> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| TrustError::BadPem(e.to_string()))?;
            self.extra_roots.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(TrustError::NoCertificate);
        }
        Ok(self)
    }

    /// Accepts only servers whose certificate's key has this SHA-256
    /// (of its DER SubjectPublicKeyInfo, as curl's `--pinnedpubkey sha256//`
    /// and `openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum`
    /// print it). Several pins: any one matches (a key and its successor).
    /// The chain is still verified; the pin narrows it, it does not replace it.
    pub fn with_pinned_key(mut self, pin: &str) -> Result<Self, TrustError> {
        let text = pin.trim();
        let text = text.strip_prefix("sha256//").unwrap_or(text);
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .ok()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).ok()
        };
        let digest: [u8; 32] = bytes
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TrustError::BadPin(pin.to_owned()))?;
        self.pins.push(digest);
        Ok(self)
    }

    /// The rustls configuration this trust makes, for an app's own
    /// connections (e.g. a raw websocket) to trust exactly what sync does.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ClientConfig>, TrustError> {
        self.client_config().map(Arc::new)
    }

    pub fn is_default(&self) -> bool {
        self.extra_roots.is_empty() && self.pins.is_empty()
    }

    /// The rustls configuration both the API client and the socket use.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TrustError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        // A platform root rustls cannot parse is skipped, as browsers do.
        roots.add_parsable_certificates(platform_roots().iter().cloned());
        for cert in &self.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| TrustError::BadPem(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TrustError::NoRoots);
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TrustError::Setup(e.to_string()))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TrustError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                chain: verifier,
                pins: self.pins.clone(),
                provider,
            }));
        Ok(builder.with_no_client_auth())
    }
}

/// The operating system's roots, read once (the store is dozens of files).
fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "a platform root certificate could not be read");
        }
        found.certs
    })
}

/// The SHA-256 of a certificate's public key, in the base64 form
/// [`ServerTrust::with_pinned_key`] takes.
pub fn spki_sha256(cert_der: &[u8]) -> Result<String, TrustError> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| TrustError::BadPem(format!("not a certificate: {e:?}")))?;
    let digest = Sha256::digest(cert.subject_public_key_info().as_ref());
    Ok(base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The chain as rustls verifies it, then the pin.
#[derive(Debug)]
struct Verifier {
    chain: Arc<WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

/// The server's key is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("its key (sha256//{found}) is not the pinned key")]
struct PinMismatch {
    found: String,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if self.pins.is_empty() {
            return Ok(verified);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let digest: [u8; 32] = Sha256::digest(cert.subject_public_key_info().as_ref()).into();
        if self.pins.contains(&digest) {
            Ok(verified)
        } else {
            let found = base64::engine::general_purpose::STANDARD.encode(digest);
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { found })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Why the server's certificate was refused, when that is what `error` (or
/// anything in its chain of causes) says; `None` for every other failure.
pub(crate) fn untrusted_reason(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(rustls::Error::InvalidCertificate(why)) = error.downcast_ref::<rustls::Error>()
        {
            return Some(describe(why));
        }
        // `io::Error::source` skips the error it wraps; look inside it.
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(reason) = untrusted_reason(inner)
        {
            return Some(reason);
        }
        next = error.source();
    }
    None
}

fn describe(why: &CertificateError) -> String {
    match why {
        CertificateError::UnknownIssuer => {
            "it was issued by an authority this device does not trust".into()
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (is this device's clock right?)".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "it was issued for another server name".into()
        }
        CertificateError::Revoked => "it has been revoked".into(),
        CertificateError::Other(other) => other.to_string(),
        other => format!("{other:?}"),
    }
}

/// Plain `ws://`/`http://` is for loopback and development; anywhere else the
/// traffic (tokens included) crosses a network in the clear.
pub(crate) fn warn_if_cleartext(url: &str) {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        tracing::warn!(
            url,
            "connecting without TLS to a host that is not this machine: use wss:// (https://)"
        );
    }
}
