//! The service author's say over each downstream request: forward it (maybe
//! rewritten), answer it here, or refuse it.

use std::net::SocketAddr;

use serde_json::value::RawValue;

use crate::protocol::{ErrorObject, Id};

/// How a downstream client reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// An HTTP `POST`.
    Http,
    /// A websocket session.
    WebSocket,
}

/// Who sent a request: what a [`Hook`] may base its decision on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Origin {
    /// HTTP or websocket.
    pub transport: Transport,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// The headers of the HTTP request, or of the websocket handshake
    /// (e.g. `Authorization`).
    pub headers: actix_web::http::header::HeaderMap,
    /// A number for the websocket session (0 for HTTP).
    pub session: u64,
}

impl Origin {
    /// An origin for tests and for callers of [`Forward::message`](super::Forward::message).
    pub fn new(transport: Transport) -> Origin {
        Origin {
            transport,
            peer: None,
            headers: actix_web::http::header::HeaderMap::new(),
            session: 0,
        }
    }
}

/// One downstream request or notification on its way upstream; a [`Hook`]
/// may rewrite its method and params.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// The method; a hook may change it.
    pub method: String,
    /// The params as raw JSON text (an array or an object), if any; a hook
    /// may change them (they are checked to be JSON before they are sent).
    pub params: Option<String>,
    /// The downstream's id, `None` for a notification. Answers always carry
    /// it, whatever the hook does.
    pub id: Option<Id>,
}

impl ProxyRequest {
    /// Whether it is a notification (no answer is sent).
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }
}

/// What happens to a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Decision {
    /// Send it upstream (as the hook left it).
    Forward,
    /// Answer it here with this result, sent exactly as given; nothing goes
    /// upstream (a cache, a local method).
    Answer(Box<RawValue>),
    /// Answer it here with this error; nothing goes upstream (a method not
    /// allowed, a client not authorised).
    Refuse(ErrorObject),
}

/// Inspects each downstream request (and notification) before it goes
/// upstream. It runs on the request's path, so it must be quick; a closure
/// `Fn(&mut ProxyRequest, &Origin) -> Decision` is a hook.
///
/// # Examples
///
/// An allow list and a method answered locally:
///
/// ```
/// use jsonrpc_websocket::proxy::{Decision, Origin, ProxyRequest};
/// use jsonrpc_websocket::ErrorObject;
///
/// let hook = |req: &mut ProxyRequest, _: &Origin| match req.method.as_str() {
///     "eth_chainId" => Decision::Answer(serde_json::value::to_raw_value("0x1").unwrap()),
///     "eth_call" | "eth_blockNumber" | "eth_subscribe" | "eth_unsubscribe" => Decision::Forward,
///     _ => Decision::Refuse(ErrorObject::method_not_found(&req.method)),
/// };
/// # let _ = jsonrpc_websocket::proxy::Forward::new(jsonrpc_websocket::proxy::Upstreams::new([])).hook(hook);
/// ```
pub trait Hook: Send + Sync + 'static {
    /// Decides what happens to `request`; may rewrite its method and params.
    fn request(&self, request: &mut ProxyRequest, origin: &Origin) -> Decision;
}

impl<F> Hook for F
where
    F: Fn(&mut ProxyRequest, &Origin) -> Decision + Send + Sync + 'static,
{
    fn request(&self, request: &mut ProxyRequest, origin: &Origin) -> Decision {
        self(request, origin)
    }
}
