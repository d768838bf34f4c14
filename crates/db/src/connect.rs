//! Opening a connection: `DATABASE_URL`'s `sslmode` with libpq's meanings, over rustls.
//!
//! tokio-postgres alone knows only `disable`, `prefer` and `require` and has no TLS of its own;
//! here every mode libpq documents is honoured
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html#LIBPQ-SSL-PROTECTION>):
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | absent, `disable`, `allow` | no | no |
//! | `prefer` | if the server offers TLS | no |
//! | `require` | yes | no; with `sslrootcert`, its chain (as libpq) |
//! | `verify-ca` | yes | its chain, against the roots |
//! | `verify-full` | yes | its chain and that it names the host in the URL |
//!
//! The roots are the PEM file named by `sslrootcert` (`DATABASE_CA_FILE` adds it, see
//! `bootstrap::settings`), else the system's store (`rustls-native-certs`). libpq's default
//! `prefer` is not ours: without `sslmode` the connection is plain, as it always was (a
//! loopback or private-network database pays no handshake).

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a connection protects itself, from the URL's `sslmode` (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP (`disable`, `allow`, or no `sslmode`).
    Disable,
    /// TLS when the server offers it, unchecked.
    Prefer,
    /// TLS or no connection; the certificate is checked only if `sslrootcert` is given.
    Require,
    /// TLS with the server's chain checked against the roots.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host the URL connects to.
    VerifyFull,
}

/// A `DATABASE_URL` split into what tokio-postgres reads and the TLS policy applied here.
#[derive(Debug, Clone)]
struct Target {
    /// The URL without `sslmode` and `sslrootcert`.
    url: String,
    mode: SslMode,
    /// `sslrootcert`: a PEM file of trusted roots.
    root_cert: Option<String>,
}

fn bad(message: impl Into<String>) -> ConnectionError {
    ConnectionError::BadConnection(message.into())
}

impl Target {
    fn parse(database_url: &str) -> Result<Self, ConnectionError> {
        // Key/value connection strings ("host=... dbname=...") go to tokio-postgres unchanged.
        let Ok(mut url) = url::Url::parse(database_url) else {
            return Ok(Target {
                url: database_url.to_owned(),
                mode: SslMode::Disable,
                root_cert: None,
            });
        };
        let mut mode = SslMode::Disable;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "sslmode" => {
                    mode = match &*value {
                        "disable" | "allow" => SslMode::Disable,
                        "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        other => {
                            return Err(bad(format!(
                                "DATABASE_URL: unknown sslmode {other:?} (disable, allow, prefer, require, verify-ca, verify-full)"
                            )));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(value.into_owned()),
                _ => kept.push((key.into_owned(), value.into_owned())),
            }
        }
        url.set_query(None);
        if !kept.is_empty() {
            url.query_pairs_mut().extend_pairs(kept);
        }
        Ok(Target {
            url: url.into(),
            mode,
            root_cert,
        })
    }

    /// The rustls client configuration for this mode, or `None` for a plain connection.
    fn tls_config(&self) -> Result<Option<rustls::ClientConfig>, ConnectionError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, &self.root_cert) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::Prefer, _) | (SslMode::Require, None) => {
                Arc::new(Unchecked(Arc::clone(&provider)))
            }
            (SslMode::Require | SslMode::VerifyCa, _) => {
                Arc::new(ChainOnly(self.webpki_verifier(&provider)?))
            }
            (SslMode::VerifyFull, _) => self.webpki_verifier(&provider)?,
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(format!("TLS set-up: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(config))
    }

    fn webpki_verifier(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, ConnectionError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| bad(format!("sslrootcert {path}: {e}")))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(bad(format!("sslrootcert {path}: no certificate in it")));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(bad(
                        "no system root certificates found: set DATABASE_CA_FILE (or sslrootcert)",
                    ));
                }
            }
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|e| bad(format!("TLS roots: {e}")))
    }
}

/// Opens one connection to `database_url`, over TLS when its `sslmode` asks (see the module
/// documentation). The URL's password never appears in the error.
///
/// # Errors
/// [`ConnectionError`] when the URL is malformed, the roots cannot be read, the server is
/// unreachable, refuses TLS under `require` or stronger, or its certificate fails the check.
pub async fn establish(database_url: &str) -> Result<AsyncPgConnection, ConnectionError> {
    let target = Target::parse(database_url)?;
    let Some(tls) = target.tls_config()? else {
        return AsyncPgConnection::establish(&target.url).await;
    };
    let mut config: tokio_postgres::Config = target
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(e.to_string()))?;
    config.ssl_mode(if target.mode == SslMode::Prefer {
        tokio_postgres::config::SslMode::Prefer
    } else {
        tokio_postgres::config::SslMode::Require
    });
    let (client, connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .map_err(|e| bad(with_causes(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

/// The error and its causes: tokio-postgres' own message is only "error performing TLS
/// handshake"; the cause says which check failed (e.g. `UnknownIssuer`, `NotValidForName`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    message
}

/// `verify-ca` (and `require` with roots): the chain must lead to a trusted root; the name in
/// the certificate is not compared with the host. The handshake signatures are checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means a good chain.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            checked => checked,
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

/// `prefer` and `require` without roots: encrypted, the certificate taken as offered (libpq
/// does the same). The handshake signatures are still checked against it.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_rootcert_are_taken_out_of_the_url_and_other_parameters_kept() {
        let target = Target::parse(
            "postgres://u:p%40ss@db.example:6543/cti?application_name=w&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("parses");
        assert_eq!(target.mode, SslMode::VerifyFull);
        assert_eq!(target.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            target.url,
            "postgres://u:p%40ss@db.example:6543/cti?application_name=w"
        );
    }

    #[test]
    fn no_sslmode_is_plain_and_an_unknown_one_is_refused() {
        let plain = Target::parse("postgres://u@localhost/cti").expect("parses");
        assert_eq!(plain.mode, SslMode::Disable);
        assert_eq!(plain.url, "postgres://u@localhost/cti");
        let error = Target::parse("postgres://u:secret@localhost/cti?sslmode=verify")
            .expect_err("unknown mode");
        assert!(error.to_string().contains("unknown sslmode"), "{error}");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
