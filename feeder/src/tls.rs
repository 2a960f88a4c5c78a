//! TLS to PostgreSQL through rustls (aws-lc-rs), as libpq's `sslmode` defines it:
//! - `disable`: no TLS; `allow`/`prefer`: TLS when the server offers it, certificate not
//!   checked; `require`: TLS, certificate not checked, unless a root certificate is given or
//!   `~/.postgresql/root.crt` exists (then as `verify-ca`, as libpq does);
//! - `verify-ca`: the chain must lead to a trusted root; `verify-full`: and the certificate
//!   must name the host.
//!
//! Roots: `sslrootcert` (a PEM file; `system` for the system's store), else
//! `~/.postgresql/root.crt` if it exists, else the system's roots. A client certificate
//! (`sslcert`/`sslkey`, PEM) is sent when configured (or found in `~/.postgresql/`).
//!
//! Owns building the rustls configuration and naming a verification failure in one line. It
//! never weakens a mode: a certificate is unchecked only in the modes that say so.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, PeerMisbehaved, RootCertStore,
    SignatureScheme,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    Chain,
    ChainAndHost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    File(PathBuf),
    System,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("{what} {path} holds no usable PEM {kind}")]
    Pem { what: &'static str, path: String, kind: &'static str },
    #[error("no system root certificates found: set sslrootcert to the server's CA file")]
    NoSystemRoots,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("TLS configuration: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The rustls client configuration for a mode, roots and an optional client certificate.
pub fn client_config(
    verify: Verify,
    roots: &Roots,
    client_cert: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(Unchecked(provider)),
        Verify::Chain | Verify::ChainAndHost => {
            let roots = Arc::new(root_store(roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider).build()?;
            if verify == Verify::Chain {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    Ok(match client_cert {
        Some((cert, key)) => {
            let certs = read_certs("sslcert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Pem {
                what: "sslkey",
                path: key.display().to_string(),
                kind: "private key",
            })?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    })
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::Pem { what, path: path.display().to_string(), kind: "certificate" });
    }
    Ok(certs)
}

fn root_store(roots: &Roots) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            for cert in read_certs("sslrootcert", path)? {
                store.add(cert)?;
            }
        }
        Roots::System => {
            // Certificates the store cannot parse are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain is checked, the name is not (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (and revocation) before the name, so a name error means the
        // chain passed.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`/`require` without a root: encrypted, the peer unchecked (libpq's meaning). The
/// handshake signatures are still verified, so the session is with the certificate's holder.
///
/// They are verified with the certificate's public key alone, not through webpki's certificate
/// parser: that parser refuses X.509 version 1 certificates, which is what Citus's automatic
/// TLS and `openssl x509 -req` make, and libpq accepts them in these modes.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_public_key(message, cert, dss, &self.0.signature_verification_algorithms, false)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_public_key(message, cert, dss, &self.0.signature_verification_algorithms, true)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks a handshake signature with the public key of `cert`, whatever the certificate's
/// version, as rustls's own `verify_tls12_signature`/`verify_tls13_signature` do otherwise:
/// in TLS 1.3 only the scheme's first algorithm, in TLS 1.2 each that fits the key.
fn verify_with_public_key(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use x509_cert::der::{Decode, Encode};
    let unadvertised =
        || rustls::Error::PeerMisbehaved(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme);
    let bad = |e: CertificateError| rustls::Error::InvalidCertificate(e);
    if tls13 && !allowed_in_tls13(dss.scheme) {
        return Err(unadvertised());
    }
    let spki = x509_cert::Certificate::from_der(cert.as_ref())
        .and_then(|c| c.tbs_certificate.subject_public_key_info.to_der())
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    let spki = SubjectPublicKeyInfoDer::from(spki.as_slice());
    let key = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| if tls13 { &algs[..algs.len().min(1)] } else { *algs })
        .ok_or_else(unadvertised)?;
    for alg in candidates {
        match key.verify_signature(*alg, message, dss.signature()) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(_) => return Err(bad(CertificateError::BadSignature)),
        }
    }
    Err(bad(CertificateError::BadSignature))
}

/// RFC 8446 section 4.2.3: TLS 1.3 signs with neither RSA PKCS#1 v1.5 nor SHA-1 (the check
/// rustls makes in its own TLS 1.3 verification, which is not public).
fn allowed_in_tls13(scheme: SignatureScheme) -> bool {
    use SignatureScheme::*;
    !matches!(
        scheme,
        RSA_PKCS1_SHA1 | ECDSA_SHA1_Legacy | RSA_PKCS1_SHA256 | RSA_PKCS1_SHA384 | RSA_PKCS1_SHA512
    ) && !matches!(scheme, Unknown(_))
}

/// The certificate problem behind a failed connection, in one line, if that is what failed:
/// retrying cannot fix it, so the feeder stops at once instead of waiting out its start-up
/// timeout.
pub fn verification_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(c)) = tls {
            return Some(describe(c));
        }
        cur = err.source();
    }
    None
}

/// tokio-postgres's words when sslmode requires TLS and the server's answer to the TLS request
/// is anything but yes. The error has no type of its own, so these words are matched here and
/// nowhere else; the TLS integration test checks them against a real server with `ssl = off`.
const SERVER_WITHOUT_TLS: &str = "server does not support TLS";

/// The server did not take up TLS that sslmode requires. Named in the log line only, and still
/// retried: tokio-postgres gives the same error when the server answers with an error instead
/// (PostgreSQL does when it cannot start a backend), and a "no" can come from the network path.
pub fn refused_by_server(e: &tokio_postgres::Error) -> bool {
    e.code().is_none()
        && std::error::Error::source(e).is_some_and(|s| s.to_string() == SERVER_WITHOUT_TLS)
}

fn describe(c: &CertificateError) -> String {
    use CertificateError::*;
    let what = match c {
        UnknownIssuer => "is not signed by a trusted CA (check sslrootcert)".to_owned(),
        NotValidForName => "is not valid for this host name (sslmode=verify-full)".to_owned(),
        NotValidForNameContext { expected, .. } => {
            format!("is not valid for host name {} (sslmode=verify-full)", expected.to_str())
        }
        Expired | ExpiredContext { .. } => "has expired".to_owned(),
        NotValidYet | NotValidYetContext { .. } => "is not valid yet".to_owned(),
        Revoked => "is revoked".to_owned(),
        other => format!("was refused ({other:?})"),
    };
    format!("TLS: the server's certificate {what}")
}
