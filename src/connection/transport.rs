//! Opening the socket with awc, and turning awc's framed stream into the
//! read and write halves the actor uses.

use std::fmt;
use std::io;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::ws::Codec;
use actix_service::ServiceExt;
use actix_tls::connect::{Connection, Connector as TcpConnector, Resolver};
use awc::error::{ConnectError, SendRequestError, WsClientError};
use awc::http::Uri;
use awc::ws::WebsocketsRequest;
use awc::BoxedSocket;

use crate::error::{BoxError, Error};

/// awc's stock connector leaves Nagle's algorithm on, which delays small
/// frames while others are unacknowledged; JSON-RPC is all small frames.
pub(crate) fn default_client(connect_timeout: Duration) -> awc::Client {
    let tcp = TcpConnector::new(Resolver::default()).service().map(
        |conn: Connection<Uri, tokio::net::TcpStream>| {
            // NOTE: failing to set the option only costs latency; keep the connection.
            let _ = conn.io_ref().set_nodelay(true);
            conn
        },
    );
    let connector = awc::Connector::new()
        .connector(tcp)
        .timeout(connect_timeout);
    awc::Client::builder()
        .connector(connector)
        .timeout(connect_timeout)
        .finish()
}

/// Runs the handshake; maps awc's errors onto ours.
pub(crate) async fn handshake(
    request: WebsocketsRequest,
    url: &str,
    limit: Duration,
) -> Result<Framed<BoxedSocket, Codec>, Error> {
    let context = || format!("could not connect to {url}");
    match tokio::time::timeout(limit, request.connect()).await {
        Ok(Ok((_response, framed))) => Ok(framed),
        Ok(Err(WsClientError::InvalidResponseStatus(status))) => Err(Error::Handshake {
            url: url.to_owned(),
            status: status.as_u16(),
        }),
        Ok(Err(err)) => Err(Error::Transport {
            context: context(),
            source: source_of(err),
        }),
        Err(_elapsed) => Err(Error::Transport {
            context: context(),
            source: Box::new(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no websocket handshake within {limit:?}"),
            )),
        }),
    }
}

/// awc's error is the source, as the Python library kept aiohttp's exception.
/// awc's error type is not `Send`, so its text is kept, with the I/O error
/// beneath it when there is one (e.g. "connection refused").
fn source_of(err: WsClientError) -> BoxError {
    let message = err.to_string();
    let io = match err {
        WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(io)))
        | WsClientError::SendRequest(SendRequestError::Send(io)) => Some(io),
        _ => None,
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
