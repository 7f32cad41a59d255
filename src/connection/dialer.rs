//! What dials: the URL, handshake headers, credentials and the awc client,
//! kept by the connection so that it can dial again. Each dial opens a
//! socket and hands it over as a [`Socket`].

use std::fmt;
use std::io;
use std::time::Duration;

use actix_service::{Service, ServiceExt};
use actix_tls::connect::{
    ConnectError, ConnectInfo, Connection, Connector as TcpConnector, Resolver,
};
use awc::error::{SendRequestError, WsClientError};
use awc::http::header::{HeaderName, HeaderValue};
use awc::http::Uri;
use awc::BoxedSocket;
use bytes::BytesMut;

use crate::error::{BoxError, Error};

/// Credentials sent with the handshake.
pub(crate) enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
}

/// An open socket, after the handshake.
pub(crate) struct Socket {
    pub io: BoxedSocket,
    /// Bytes that arrived with the handshake response: the first frames.
    pub early: BytesMut,
}

/// One URL to dial.
pub(crate) struct Endpoint {
    /// The URL, without credentials.
    pub url: String,
    /// Credentials that were in the URL (`ws://user:pass@host`).
    pub auth: Option<Auth>,
}

/// Everything needed to open the connection, again if need be.
pub(crate) struct Dialer {
    /// The URLs to dial, tried in turn; at least one.
    pub endpoints: Vec<Endpoint>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub subprotocols: Vec<String>,
    /// Credentials for every endpoint that has none in its URL.
    pub auth: Option<Auth>,
    /// `None`: the thread's shared client ([`awc_client`]).
    pub client: Option<awc::Client>,
    pub connect_timeout: Duration,
    pub max_message_size: usize,
}

impl Dialer {
    /// The URL of endpoint `index` (modulo their number).
    pub fn url(&self, index: usize) -> &str {
        &self.endpoints[index % self.endpoints.len()].url
    }

    /// Opens a socket to endpoint `index` (modulo their number): TCP, TLS
    /// and the websocket handshake, all within the connect timeout.
    pub async fn dial(&self, index: usize) -> Result<Socket, Error> {
        let endpoint = &self.endpoints[index % self.endpoints.len()];
        let client = self.client.clone().unwrap_or_else(awc_client);
        let mut request = client
            .ws(endpoint.url.as_str())
            .max_frame_size(self.max_message_size);
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        if !self.subprotocols.is_empty() {
            request = request.protocols(&self.subprotocols);
        }
        request = match endpoint.auth.as_ref().or(self.auth.as_ref()) {
            Some(Auth::Basic { user, password }) => request.basic_auth(user, Some(password)),
            Some(Auth::Bearer(token)) => request.bearer_auth(token),
            None => request,
        };
        let context = || format!("could not connect to {}", endpoint.url);
        let limit = self.connect_timeout;
        match tokio::time::timeout(limit, request.connect()).await {
            Ok(Ok((_response, framed))) => {
                let parts = framed.into_parts();
                Ok(Socket {
                    io: parts.io,
                    early: parts.read_buf,
                })
            }
            Ok(Err(WsClientError::InvalidResponseStatus(status))) => Err(Error::Handshake {
                url: endpoint.url.clone(),
                status: status.as_u16(),
            }),
            Ok(Err(err)) => {
                let host = host_of(&endpoint.url);
                let (context, source) = match tls_problem(&err) {
                    Some(problem) => (
                        format!("{}: {}", context(), problem.describe(&host)),
                        tls_source(err, &host),
                    ),
                    None => (context(), source_of(err)),
                };
                Err(Error::Transport { context, source })
            }
            Err(_elapsed) => Err(Error::Transport {
                context: context(),
                source: Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no websocket handshake within {limit:?}"),
                )),
            }),
        }
    }
}

/// The TCP (and, with a TLS feature, TLS) connector this crate uses: it
/// sets `TCP_NODELAY` on every connection (JSON-RPC is small frames that
/// must not wait for the previous one's ACK; it was worth 9–27% here) and
/// puts no cap on the number of open connections (awc's default stops at
/// 100: the 101st connect would wait). Its own connect timeout is long; the
/// connection's `connect_timeout` bounds the whole handshake.
///
/// Use it to build an awc client of your own that keeps those settings:
///
/// ```
/// let client = awc::Client::builder()
///     .connector(jsonrpc_websocket::awc_connector())
///     .add_default_header(("X-Client", "docs"))
///     .disable_timeout()
///     .finish();
/// # let _ = jsonrpc_websocket::RpcConnection::builder("ws://127.0.0.1:1").client(client);
/// ```
pub fn awc_connector() -> awc::Connector<
    impl Service<
            ConnectInfo<Uri>,
            Response = Connection<Uri, tokio::net::TcpStream>,
            Error = ConnectError,
        > + Clone
        + 'static,
> {
    let tcp = TcpConnector::new(Resolver::default()).service().map(
        |conn: Connection<Uri, tokio::net::TcpStream>| {
            // NOTE: failing to set the option only costs latency; keep the connection.
            let _ = conn.io_ref().set_nodelay(true);
            conn
        },
    );
    awc::Connector::new()
        .connector(tcp)
        .limit(0)
        .timeout(Duration::from_secs(3600))
}

thread_local! {
    /// One client per thread: awc clients are not `Send`, and sharing one
    /// saves building a connector for every connection.
    static SHARED_CLIENT: awc::Client = awc::Client::builder()
        .connector(awc_connector())
        .disable_timeout()
        .finish();
}

/// The awc client connections use unless given another
/// ([`ConnectionBuilder::client`](crate::ConnectionBuilder::client)): one per
/// thread, shared by every connection made on that thread, built on
/// [`awc_connector`] (`TCP_NODELAY`, no connection cap).
pub fn awc_client() -> awc::Client {
    SHARED_CLIENT.with(awc::Client::clone)
}

/// An awc client whose connector uses the user's rustls configuration
/// (with ALPN `http/1.1`: the websocket handshake is an HTTP/1.1 request),
/// with the settings of [`awc_connector`].
#[cfg(feature = "rustls")]
pub(crate) fn rustls_client(config: std::sync::Arc<rustls::ClientConfig>) -> awc::Client {
    let mut config = rustls::ClientConfig::clone(&config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    awc::Client::builder()
        .connector(awc_connector().rustls_0_23(std::sync::Arc::new(config)))
        .disable_timeout()
        .finish()
}

/// What went wrong in a TLS handshake, when that is what failed (told
/// apart with the `rustls` feature only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
enum TlsProblem {
    /// We did not accept the server's certificate.
    ServerCertificate,
    /// The server did not accept ours (or wanted one and got none).
    ClientCertificate,
    /// Anything else the TLS layer refused.
    Handshake,
}

impl TlsProblem {
    fn describe(self, host: &str) -> String {
        match self {
            TlsProblem::ServerCertificate => format!(
                "the server's TLS certificate for {host} was not accepted (not trusted, \
                 expired, or for another name)"
            ),
            TlsProblem::ClientCertificate => format!(
                "the server at {host} did not accept our TLS client certificate (none was \
                 configured, or it is not trusted there)"
            ),
            TlsProblem::Handshake => format!("the TLS handshake with {host} failed"),
        }
    }
}

/// The TLS failure behind an awc error, if it is one: the rustls error is
/// the I/O error's inner error, found where awc keeps I/O errors (the
/// handshake, or the first read when TLS 1.3 reports a refused client
/// certificate after the handshake).
fn tls_problem(err: &WsClientError) -> Option<TlsProblem> {
    #[cfg(feature = "rustls")]
    {
        let io = io_of(err)?;
        let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(match tls {
            rustls::Error::InvalidCertificate(_) => TlsProblem::ServerCertificate,
            rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateUnknown
                | rustls::AlertDescription::CertificateExpired
                | rustls::AlertDescription::CertificateRevoked
                | rustls::AlertDescription::UnsupportedCertificate
                | rustls::AlertDescription::AccessDenied,
            ) => TlsProblem::ClientCertificate,
            _ => TlsProblem::Handshake,
        })
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = err;
        None
    }
}

/// The I/O error inside an awc error, where there is one.
#[cfg(feature = "rustls")]
fn io_of(err: &WsClientError) -> Option<&io::Error> {
    match err {
        WsClientError::SendRequest(
            SendRequestError::Connect(awc::error::ConnectError::Io(io))
            | SendRequestError::Send(io)
            | SendRequestError::Response(actix_http::error::ParseError::Io(io)),
        ) => Some(io),
        _ => None,
    }
}

/// A TLS failure as the `source()`: what was being done (with the host),
/// then the I/O error whose text is rustls's.
fn tls_source(err: WsClientError, host: &str) -> BoxError {
    let io = match err {
        WsClientError::SendRequest(
            SendRequestError::Connect(awc::error::ConnectError::Io(io))
            | SendRequestError::Send(io)
            | SendRequestError::Response(actix_http::error::ParseError::Io(io)),
        ) => Some(io),
        _ => None,
    };
    Box::new(AwcError {
        message: format!("TLS handshake with {host} failed"),
        io,
    })
}

/// The host of a URL, for messages (the URL itself when it has none).
fn host_of(url: &str) -> String {
    Uri::try_from(url)
        .ok()
        .and_then(|uri| uri.host().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

/// awc's error as the `source()`, as the Python library kept aiohttp's
/// exception. awc's error type is not `Send`, so its text is kept. Each
/// level of the chain says something new: when the cause is an I/O error,
/// awc's text (which ends with the I/O error's) is replaced by what was
/// being done, and the I/O error becomes the next level.
fn source_of(err: WsClientError) -> BoxError {
    let (message, io) = match err {
        WsClientError::SendRequest(SendRequestError::Connect(awc::error::ConnectError::Io(io))) => {
            ("could not open a TCP connection".to_owned(), Some(io))
        }
        WsClientError::SendRequest(SendRequestError::Send(io)) => {
            ("could not send the handshake request".to_owned(), Some(io))
        }
        other => (other.to_string(), None),
    };
    Box::new(AwcError { message, io })
}

/// An awc error, made sendable; see [`source_of`].
#[derive(Debug)]
struct AwcError {
    message: String,
    io: Option<io::Error>,
}

impl fmt::Display for AwcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AwcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|io| io as _)
    }
}

/// Splits `user:password@` off a URL: the URL without it, and the
/// (percent-decoded) credentials. `None` when the URL has none.
pub(crate) fn split_userinfo(url: &str) -> Option<(String, String, String)> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let stripped = format!("{}{}", &url[..scheme_end], &rest[at + 1..]);
    Some((stripped, percent_decode(user), percent_decode(password)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(value as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let table = [
            (
                "ws://ann:s3cret@host:9/rpc?x=1",
                Some(("ws://host:9/rpc?x=1", "ann", "s3cret")),
            ),
            ("wss://ann@host/", Some(("wss://host/", "ann", ""))),
            ("ws://a%40b:p%3Aw%25@h", Some(("ws://h", "a@b", "p:w%"))),
            ("ws://user:pa@ss@h/", Some(("ws://h/", "user", "pa@ss"))),
            ("ws://host/path@x", None),
            ("ws://host:9/", None),
        ];
        for (url, expected) in table {
            let got = split_userinfo(url);
            let got = got
                .as_ref()
                .map(|(u, user, pass)| (u.as_str(), user.as_str(), pass.as_str()));
            assert_eq!(got, expected, "{url}");
        }
    }
}
