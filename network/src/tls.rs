//! TLS with pinned identities: self-signed Ed25519 certificates, and verifiers that accept a peer only when
//! the key inside its certificate is in the peer list.
//!
//! There is no certificate authority. Each endpoint presents a certificate that rcgen signs with the
//! node's network key; both sides of a QUIC handshake (mutual TLS) extract the Ed25519 key from the other's
//! SubjectPublicKeyInfo and look it up in [`Peers`]. The handshake signature is then checked against that
//! certificate with rustls' own `verify_tls13_signature` and the ring provider's algorithms, which proves
//! the peer holds the private key. Everything uses the ring provider explicitly, so no process-wide
//! default provider has to be installed.

use std::sync::Arc;

use mako_types::{NetworkKeyPair, NetworkPublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::NetworkError;
use crate::peers::Peers;

/// The name clients ask for and certificates carry; identity comes from the key, not from this name.
pub(crate) const SERVER_NAME: &str = "mako";
/// The ALPN protocol both sides must speak.
const ALPN: &[u8] = b"mako/1";
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The Ed25519 key inside a DER certificate, or `None` if the certificate does not parse or holds another
/// kind of key.
pub fn certificate_key(certificate: &CertificateDer<'_>) -> Option<NetworkPublicKey> {
    let parsed = ParsedCertificate::try_from(certificate).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    Some(NetworkPublicKey(key.try_into().ok()?))
}

/// The verified key of the peer on the other end of `connection`.
pub(crate) fn peer_key(connection: &quinn::Connection) -> Option<NetworkPublicKey> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certificate_key(chain.first()?)
}

/// A self-signed certificate for `key`, and the private key in the form rustls loads.
fn self_signed(key: &NetworkKeyPair) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), NetworkError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(key.pkcs8_der());
    let signing_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| NetworkError::Tls(format!("cannot load the network key: {e}")))?;
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_owned()])
        .map_err(|e| NetworkError::Tls(format!("certificate parameters: {e}")))?;
    let certificate =
        params.self_signed(&signing_key).map_err(|e| NetworkError::Tls(format!("cannot sign the certificate: {e}")))?;
    Ok((certificate.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// Accepts exactly the certificates whose Ed25519 key is in the peer list; used on both sides.
#[derive(Debug)]
struct PinnedKeys {
    peers: Arc<Peers>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedKeys {
    fn new(peers: Arc<Peers>) -> Self {
        Self { peers, algorithms: provider().signature_verification_algorithms }
    }

    fn check(&self, certificate: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let key =
            certificate_key(certificate).ok_or(rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.peers.contains_key(&key) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls13(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ServerCertVerifier for PinnedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _certificate: &CertificateDer<'_>,
        _signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only (RFC 9001 §4.2).
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for PinnedKeys {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _certificate: &CertificateDer<'_>,
        _signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// The QUIC server side: present our certificate, require one from the client, pin it to `peers`.
pub(crate) fn server_crypto(
    key: &NetworkKeyPair,
    peers: Arc<Peers>,
) -> Result<quinn::crypto::rustls::QuicServerConfig, NetworkError> {
    let (certificate, private_key) = self_signed(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetworkError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PinnedKeys::new(peers)))
        .with_single_cert(vec![certificate], private_key)
        .map_err(|e| NetworkError::Tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(config).map_err(|e| NetworkError::Tls(e.to_string()))
}

/// The QUIC client side: present our certificate, pin the server's to `peers`.
pub(crate) fn client_crypto(
    key: &NetworkKeyPair,
    peers: Arc<Peers>,
) -> Result<quinn::crypto::rustls::QuicClientConfig, NetworkError> {
    let (certificate, private_key) = self_signed(key)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetworkError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedKeys::new(peers)))
        .with_client_auth_cert(vec![certificate], private_key)
        .map_err(|e| NetworkError::Tls(format!("client certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(config).map_err(|e| NetworkError::Tls(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_the_network_key() {
        let key = NetworkKeyPair::from_seed([3; 32]);
        let (certificate, _) = self_signed(&key).unwrap();
        assert_eq!(certificate_key(&certificate), Some(key.public()));
    }

    #[test]
    fn garbage_certificate_has_no_key() {
        assert_eq!(certificate_key(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])), None);
    }
}
