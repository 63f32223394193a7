//! MQTTS for the embedded broker: TLS 1.2/1.3 terminated here (rustls on the platform's one
//! crypto provider), each connection then handed to the broker over loopback.
//!
//! - A device may present a client certificate. The handshake accepts it only if the platform's CA
//!   issued it, it is within its validity, and it is in [`ActiveCertificates`] (not revoked, its
//!   device not deleted) with its subject CN naming that device; anything else is refused at the
//!   handshake. Without a certificate the device logs in with its API key, as on the plain port.
//! - The decrypted stream goes to the broker's *tunnel* listener (loopback, a port of its own).
//!   The broker's hooks learn who is on a tunnel connection from [`Peers`]: its loopback address
//!   (unique while it is open) → the certificate the handshake verified. A tunnel connection not
//!   in `Peers` is refused unless it carries the platform's own credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dashmap::DashMap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::ca::{ActiveCert, ActiveCertificates, CertIdentity};

/// Who is on one tunnel connection.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    /// The device's own address.
    pub remote: SocketAddr,
    /// The certificate it presented and the handshake verified, with its serial.
    pub certificate: Option<(String, ActiveCert)>,
}

/// Open MQTTS connections by the loopback address they reach the broker from.
pub type Peers = DashMap<SocketAddr, TlsPeer>;

/// Accepts a client certificate only when the CA verifies it and the platform still accepts it.
#[derive(Debug)]
struct DeviceCertVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    certificates: Arc<ActiveCertificates>,
}

/// The accepted certificate a DER certificate is: known serial, subject CN = its device.
fn accepted(certificates: &ActiveCertificates, der: &[u8]) -> Option<(String, ActiveCert)> {
    let identity = CertIdentity::read(der)?;
    let active = certificates.get(&identity.serial)?;
    (identity.common_name == Some(active.device_id.to_string()))
        .then_some((identity.serial, active))
}

impl ClientCertVerifier for DeviceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// A device may log in with an API key instead.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hint: a client whose certificate is from another CA still presents it (OpenSSL
    /// clients withhold a certificate the hint does not match) and learns at the handshake why
    /// it is refused, rather than later as a login without credentials.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Chain to the CA, validity and key usage first.
        self.chain
            .verify_client_cert(end_entity, intermediates, now)?;
        match accepted(&self.certificates, end_entity) {
            Some(_) => Ok(ClientCertVerified::assertion()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The MQTTS server configuration: TLS 1.2 and 1.3, the server certificate from `cert`, client
/// certificates optional and checked against the CA and `certificates`.
pub fn server_config(
    cert: Arc<dyn ResolvesServerCert>,
    ca: &CertificateDer<'static>,
    certificates: Arc<ActiveCertificates>,
) -> anyhow::Result<ServerConfig> {
    let provider = crate::tls_files::platform_provider();
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .context("the CA certificate cannot be a trust anchor")?;
    let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("the client certificate verifier")?;
    let verifier = DeviceCertVerifier {
        chain,
        certificates,
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 are not available from the crypto provider")?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(cert);
    Ok(config)
}

/// What the MQTTS listener needs.
#[derive(Clone)]
pub struct MqttsConfig {
    pub addr: SocketAddr,
    pub server: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once.
    pub max_handshakes: usize,
}

/// Accepts MQTTS connections on `listener` and hands each, decrypted, to the broker at `tunnel`.
pub async fn serve(
    listener: TcpListener,
    config: MqttsConfig,
    tunnel: SocketAddr,
    peers: Arc<Peers>,
    certificates: Arc<ActiveCertificates>,
) {
    let acceptor = TlsAcceptor::from(config.server);
    let handshake_timeout = config.handshake_timeout;
    let handshaking = Arc::new(tokio::sync::Semaphore::new(config.max_handshakes));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %err, "MQTTS: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // A slot for the handshake, or the connection is closed now.
        let Ok(slot) = handshaking.clone().try_acquire_owned() else {
            handshakes("busy");
            drop(stream);
            continue;
        };
        let (acceptor, peers, certificates) =
            (acceptor.clone(), peers.clone(), certificates.clone());
        tokio::spawn(async move {
            connection(
                stream,
                remote,
                acceptor,
                (handshake_timeout, slot),
                tunnel,
                peers,
                certificates,
            )
            .await;
        });
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    (handshake_timeout, slot): (Duration, tokio::sync::OwnedSemaphorePermit),
    tunnel: SocketAddr,
    peers: Arc<Peers>,
    certificates: Arc<ActiveCertificates>,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
    drop(slot);
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            handshakes("refused");
            tracing::info!(%remote, error = %err, "MQTTS: handshake refused");
            return;
        }
        Err(_) => {
            handshakes("timeout");
            tracing::info!(%remote, "MQTTS: handshake not finished in time");
            return;
        }
    };
    handshakes("ok");
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|der| accepted(&certificates, der));
    let upstream = match TcpStream::connect(tunnel).await {
        Ok(upstream) => upstream,
        Err(err) => {
            tracing::error!(error = %err, "MQTTS: the broker's tunnel listener does not answer");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let Ok(local) = upstream.local_addr() else {
        return;
    };
    peers.insert(
        local,
        TlsPeer {
            remote,
            certificate,
        },
    );
    // Forgotten before the loopback socket closes, so its port is never found again in `peers`.
    pipe(tls, upstream, || {
        peers.remove(&local);
    })
    .await;
}

/// Copies both ways until either side closes, then closes both: when the broker ends a session
/// (a revoked certificate), the device's connection ends with it.
/// `ended` runs once copying stops, before either socket is closed.
async fn pipe(
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    upstream: TcpStream,
    ended: impl FnOnce(),
) {
    use tokio::io::AsyncWriteExt;
    let (mut device_in, mut device_out) = tokio::io::split(tls);
    let (mut broker_in, mut broker_out) = upstream.into_split();
    let broker_closed = tokio::select! {
        _ = tokio::io::copy(&mut device_in, &mut broker_out) => false,
        _ = tokio::io::copy(&mut broker_in, &mut device_out) => true,
    };
    ended();
    if broker_closed {
        let _ = device_out.shutdown().await;
    }
}

fn handshakes(outcome: &'static str) {
    metrics::counter!("insa_mqtts_handshakes_total", "outcome" => outcome).increment(1);
}
