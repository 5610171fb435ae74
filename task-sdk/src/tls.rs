//! Mutual TLS 1.3 for QUIC with self-signed Ed25519 certificates.
//!
//! There is no CA. Each side presents a self-signed certificate for its node key.
//! The verifiers below parse the certificate's SubjectPublicKeyInfo themselves,
//! check the handshake signature with exactly that key, and derive the remote
//! peer id from it. When the dialler knows whom it meant to reach, it puts the
//! expected ring position into the TLS server name (`<16 hex>.chorus`) and the
//! verifier refuses a certificate whose key does not hash to it.

use std::sync::Arc;

use chorus_core::RingPos;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::{Identity, PeerId};

/// The ALPN protocol name and version of Chorus. Version 2: attestations,
/// signed specs, `Held` and `Prove` (a node of version 1 cannot decode them,
/// so the two refuse each other at the handshake rather than mid-job).
/// Version 3: signed terms and bounded batches. Version 4: adaptive
/// verification (a policy's mode and error target, a result's accepting
/// rule), which an older node would misread as full verification.
/// Version 6: the ring's `Merge` request (ring unification after a
/// partition), which an older node cannot decode. Version 7: blobs in
/// chunks (`BlobIndex`, `Chunk`, `PutBlob`, `PutChunk`).
pub const ALPN: &[u8] = b"chorus/7";

/// Server name used when dialling an address whose id we do not know yet.
pub const ANY_PEER: &str = "any.chorus";

/// Errors building TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate for our key could not be made.
    #[error("could not create certificate: {0}")]
    Cert(String),
    /// rustls or quinn refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The server name that pins `pos`.
pub fn server_name_for(pos: Option<RingPos>) -> String {
    match pos {
        Some(p) => format!("{p}.chorus"),
        None => ANY_PEER.to_string(),
    }
}

/// A self-signed certificate for `identity`, and its private key for rustls.
pub fn certificate(
    identity: &Identity,
) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsError> {
    let pkcs8 = PrivatePkcs8KeyDer::from(identity.pkcs8().to_vec());
    let kp = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_ED25519)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let params = rcgen::CertificateParams::new(vec![format!("{}.chorus", identity.ring_pos())])
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let cert = params
        .self_signed(&kp)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(pkcs8)))
}

/// Client (dialling) configuration: presents our certificate, verifies the server's.
pub fn client_config(identity: &Identity) -> Result<rustls::ClientConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier))
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Server (accepting) configuration: requires and verifies a client certificate.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let (cert, key) = certificate(identity)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PeerVerifier))
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// The peer id of a certificate: SHA-256 of its Ed25519 public key.
pub fn peer_id_of(cert: &[u8]) -> Option<PeerId> {
    ed25519_key_of(cert).map(PeerId::from_public_key)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Extracts the raw Ed25519 key from a certificate's SubjectPublicKeyInfo by walking
/// the DER structure (Certificate → TBSCertificate → the seventh field, or sixth
/// without the explicit version), never by searching for byte patterns.
pub fn ed25519_key_of(cert: &[u8]) -> Option<&[u8]> {
    let (tag, cert_body, _) = der_tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = der_tlv(cert_body)?;
    if tag != 0x30 {
        return None;
    }
    // version [0] (optional), serial, signature, issuer, validity, subject, spki
    let mut fields = Vec::with_capacity(7);
    while fields.len() < 7 && !tbs.is_empty() {
        let (tag, value, rest) = der_tlv(tbs)?;
        fields.push((tag, value));
        tbs = rest;
    }
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (tag, spki) = *fields.get(5 + skip)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, alg, rest) = der_tlv(spki)?;
    // AlgorithmIdentifier { OID 1.3.101.112 } without parameters.
    if tag != 0x30 || alg != [0x06, 0x03, 0x2b, 0x65, 0x70] {
        return None;
    }
    let (tag, bits, rest) = der_tlv(rest)?;
    if tag != 0x03 || !rest.is_empty() || bits.len() != 33 || bits[0] != 0 {
        return None;
    }
    Some(&bits[1..])
}

/// One DER tag-length-value: (tag, value, rest). Short and long lengths up to 4 bytes.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// QUIC is TLS 1.3 only; a TLS 1.2 signature never reaches a verifier.
fn tls12_refused() -> rustls::Error {
    rustls::Error::PeerIncompatible(rustls::PeerIncompatible::Tls13RequiredForQuic)
}

fn bad_cert(why: &str) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(PeerCertError(why.to_string())),
    )))
}

/// Why a peer certificate was refused.
#[derive(Debug, thiserror::Error)]
#[error("peer certificate refused: {0}")]
pub struct PeerCertError(pub String);

/// Verifies both sides: Ed25519 self-signed certificates, pinned by ring position when
/// known (through the server name), handshake signatures checked with the certificate's key.
/// A server is a node: its key must carry the identity proof of work
/// ([`crate::identity::ID_WORK_BITS`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerVerifier;

impl PeerVerifier {
    /// `node`: the peer must be a node (a server always is; a client may be
    /// anyone, and what it may ask is decided per request).
    fn check_cert(
        &self,
        cert: &CertificateDer<'_>,
        pin: Option<RingPos>,
        node: bool,
    ) -> Result<(), rustls::Error> {
        let id = peer_id_of(cert).ok_or_else(|| bad_cert("not an Ed25519 certificate"))?;
        if node && !id.has_work() {
            return Err(bad_cert(&format!(
                "{} is no node: its key lacks the identity proof of work",
                id.ring_pos()
            )));
        }
        if let Some(want) = pin
            && id.ring_pos() != want
        {
            return Err(bad_cert(&format!(
                "certificate key belongs to {}, expected {want}",
                id.ring_pos()
            )));
        }
        Ok(())
    }

    fn check_sig(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        let key = ed25519_key_of(cert).ok_or_else(|| bad_cert("not an Ed25519 certificate"))?;
        if crate::identity::verify(key, message, dss.signature()) {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadSignature,
            ))
        }
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = match server_name {
            ServerName::DnsName(name) => name
                .as_ref()
                .strip_suffix(".chorus")
                .and_then(|p| p.parse::<RingPos>().ok()),
            _ => None,
        };
        self.check_cert(end_entity, pin, true)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_sig(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check_cert(end_entity, None, false)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(tls12_refused())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.check_sig(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_key_is_the_identity_key() {
        let id = Identity::generate().unwrap();
        let (cert, _) = certificate(&id).unwrap();
        assert_eq!(ed25519_key_of(&cert).unwrap(), &id.public_key()[..]);
        assert_eq!(peer_id_of(&cert), Some(id.peer_id()));
        assert!(ed25519_key_of(b"\x30\x03\x30\x01").is_none());
        for cut in 0..cert.len() {
            let _ = ed25519_key_of(&cert[..cut]);
        }
    }
}
