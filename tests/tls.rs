//! `wss://` with the `rustls` feature: the connector is built (rustls has a
//! crypto provider) and TLS failures are transport errors, never panics; a
//! custom `ClientConfig` trusts a private CA (certificates made in the test
//! with rcgen, served by an in-process TLS front end) and sends a client
//! certificate; the errors say which certificate was refused, and for which
//! host.
#![cfg(feature = "rustls")]

use test_support as support;

use jsonrpc_websocket::{Error, RpcConnection};
use support::{chain, within};

#[actix_rt::test]
async fn wss_to_a_server_that_does_not_speak_tls_is_a_transport_error() {
    // Answers the TLS client hello with plain HTTP: no handshake can succeed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut socket, _) = listener.accept().unwrap();
        let mut hello = [0u8; 512];
        let _ = socket.read(&mut hello);
        let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let err = within("connect", RpcConnection::builder(&url).connect())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    let causes = chain(&err);
    assert!(
        causes.len() >= 2,
        "the TLS failure is the source: {causes:?}"
    );
    server.join().unwrap();
}

// ---- a private CA, an in-process wss:// front end, mutual TLS -------------

use std::net::SocketAddr;
use std::sync::Arc;

use jsonrpc_websocket::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use jsonrpc_websocket::rustls::server::WebPkiClientVerifier;
use jsonrpc_websocket::rustls::{ClientConfig, RootCertStore, ServerConfig};
use jsonrpc_websocket::{params, ConnectionBuilder};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::{standard, TestServer};

/// A certificate authority made for one test.
struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate chain and its private key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names`, signed by this CA.
    fn issue(&self, names: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let key = PrivatePkcs8KeyDer::from(key.serialize_der());
        (vec![cert.der().clone()], key.into())
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }

    /// A client configuration that trusts this CA alone.
    fn client_config(&self) -> Arc<ClientConfig> {
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(self.roots())
                .with_no_client_auth(),
        )
    }
}

/// `wss://` in front of a plain `TestServer`: terminates TLS (with a
/// certificate from the test's CA) and relays the bytes, on a thread and
/// runtime of its own, until dropped.
struct TlsFront {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    fn start(config: ServerConfig, backend: SocketAddr) -> TlsFront {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A refused handshake just ends this connection.
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await
                            else {
                                return;
                            };
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        });
                    }
                };
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        TlsFront {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL by host name, as certificates name hosts.
    fn url(&self) -> String {
        format!("wss://localhost:{}/", self.addr.port())
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A TLS server with a certificate for `localhost` from `ca`, in front of a
/// standard `TestServer`.
fn wss_server(ca: &Ca, client_auth: Option<&Ca>) -> (TestServer, TlsFront) {
    let backend = TestServer::start(standard);
    let (chain, key) = ca.issue(&["localhost"]);
    let config = match client_auth {
        Some(clients) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(clients.roots()))
                .build()
                .unwrap();
            ServerConfig::builder().with_client_cert_verifier(verifier)
        }
        None => ServerConfig::builder().with_no_client_auth(),
    }
    .with_single_cert(chain, key)
    .unwrap();
    let front = TlsFront::start(config, backend.addr());
    (backend, front)
}

fn builder(url: &str) -> ConnectionBuilder {
    RpcConnection::builder(url).connect_timeout(std::time::Duration::from_secs(5))
}

/// Connects with `config`, calls, closes.
async fn calls_over_wss(url: &str, config: Arc<ClientConfig>) {
    let client = within("connect", builder(url).rustls_config(config).connect())
        .await
        .unwrap();
    let sum: i64 = within("a call over wss", client.call("add", params![40, 2]))
        .await
        .unwrap();
    assert_eq!(sum, 42);
    within("close", client.close()).await.unwrap();
}

#[actix_rt::test]
async fn a_private_ca_is_trusted_through_rustls_config() {
    let ca = Ca::new("private CA");
    let (_backend, front) = wss_server(&ca, None);
    calls_over_wss(&front.url(), ca.client_config()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_works_outside_an_actix_system_too() {
    let ca = Ca::new("private CA");
    let (_backend, front) = wss_server(&ca, None);
    calls_over_wss(&front.url(), ca.client_config()).await;
}

/// Connects, expecting a TLS failure; returns the message and the chain.
async fn tls_failure(builder: ConnectionBuilder) -> (String, Vec<String>) {
    let err = within("connect", builder.connect()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    (err.to_string(), chain(&err))
}

#[actix_rt::test]
async fn without_the_ca_the_error_is_a_certificate_problem_naming_the_host() {
    let ca = Ca::new("private CA");
    let (_backend, front) = wss_server(&ca, None);
    // The default configuration: the webpki roots, which know nothing of it.
    let (message, causes) = tls_failure(builder(&front.url())).await;
    assert_eq!(
        message,
        format!(
            "could not connect to {}: the server's TLS certificate for localhost was not \
             accepted (not trusted, expired, or for another name)",
            front.url()
        )
    );
    assert_eq!(causes[1], "TLS handshake with localhost failed");
    assert!(causes[2].contains("UnknownIssuer"), "{causes:?}");

    // Another CA's roots do not help either.
    let other = Ca::new("another CA");
    let (message, causes) =
        tls_failure(builder(&front.url()).rustls_config(other.client_config())).await;
    assert!(message.contains("certificate for localhost"), "{message}");
    assert!(causes[2].contains("UnknownIssuer"), "{causes:?}");
}

#[actix_rt::test]
async fn a_certificate_for_another_name_is_refused_by_name() {
    let ca = Ca::new("private CA");
    let backend = TestServer::start(standard);
    let (chain, key) = ca.issue(&["node.internal"]);
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let front = TlsFront::start(config, backend.addr());
    let (message, causes) =
        tls_failure(builder(&front.url()).rustls_config(ca.client_config())).await;
    assert!(message.contains("certificate for localhost"), "{message}");
    assert!(
        causes[2].contains("not valid for name \"localhost\""),
        "{causes:?}"
    );
}

#[actix_rt::test]
async fn a_client_certificate_is_sent_to_a_server_that_requires_one() {
    let ca = Ca::new("private CA");
    let clients = Ca::new("client CA");
    let (_backend, front) = wss_server(&ca, Some(&clients));
    let (chain, key) = clients.issue(&["client-1"]);
    let with_cert = ClientConfig::builder()
        .with_root_certificates(ca.roots())
        .with_client_auth_cert(chain, key)
        .unwrap();
    calls_over_wss(&front.url(), Arc::new(with_cert)).await;

    // Without one the server refuses, and the error says which certificate.
    let (message, causes) =
        tls_failure(builder(&front.url()).rustls_config(ca.client_config())).await;
    assert!(
        message.contains("did not accept our TLS client certificate"),
        "{message} / {causes:?}"
    );
    assert!(message.contains("localhost"), "{message}");
    assert!(causes[2].contains("CertificateRequired"), "{causes:?}");
}

#[actix_rt::test]
async fn an_awc_client_and_a_rustls_config_are_not_given_together() {
    let ca = Ca::new("private CA");
    let err = builder("wss://localhost:1/")
        .client(jsonrpc_websocket::awc_client())
        .rustls_config(ca.client_config())
        .connect()
        .await
        .unwrap_err();
    let Error::InvalidConfig { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("rustls_config"), "{reason}");
}
