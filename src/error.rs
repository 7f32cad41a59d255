//! The one error type of this crate.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::protocol::ErrorObject;

/// A boxed error kept as the `source()` of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which call an error is about: its method and the id it was sent with.
///
/// Displays as `'math.add' (id 3)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The full method name.
    pub method: Cow<'static, str>,
    /// The request id this connection gave the call.
    pub id: u64,
}

impl fmt::Display for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' (id {})", self.method, self.id)
    }
}

/// Which subscription an error is about: the subscribe method and the id
/// the server gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The subscribe method.
    pub method: Cow<'static, str>,
    /// The subscription id the server returned.
    pub id: crate::protocol::Id,
}

impl fmt::Display for SubscriptionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subscription {} of '{}'", self.id, self.method)
    }
}

/// " while waiting for 'm' (id 1)", or nothing.
struct Waiting<'a>(&'a Option<CallInfo>);

impl fmt::Display for Waiting<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(call) => write!(f, " while waiting for {call}"),
            None => Ok(()),
        }
    }
}

/// Everything that can go wrong with a connection or a call.
///
/// Messages are lowercase sentences that name the method and id of the call
/// involved; the underlying cause, when there is one, is in
/// [`source()`](std::error::Error::source), not repeated in the text.
///
/// # Examples
///
/// ```
/// # use jsonrpc_websocket::{Client, Error};
/// # async fn demo(client: Client) {
/// match client.call::<i64>("math.div", jsonrpc_websocket::params![1, 0]).await {
///     Ok(n) => println!("{n}"),
///     Err(Error::Rpc { error, .. }) if error.code == -32000 => println!("refused: {}", error.message),
///     Err(err) if err.is_timeout() => println!("too slow: {err}"),
///     Err(err) => println!("failed: {err}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder was given something unusable (a bad URL or header).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// The socket could not be opened or failed while in use (DNS, TCP, TLS,
    /// I/O). The awc or I/O error is the `source()`.
    #[error("{context}")]
    Transport {
        /// What was being done, e.g. "could not connect to ws://…".
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The server answered the websocket handshake with an HTTP status other
    /// than 101 (for example 401 when credentials are missing).
    #[error("websocket handshake with {url} was rejected with HTTP status {status}")]
    Handshake {
        /// The URL that was connected to.
        url: String,
        /// The HTTP status code the server answered with.
        status: u16,
    },

    /// The server answered the call with a JSON-RPC error object.
    #[error("{call} failed on the server: {error}")]
    Rpc {
        /// The call that failed.
        call: CallInfo,
        /// The error object exactly as the server sent it.
        error: Box<ErrorObject>,
    },

    /// No response arrived within the call's timeout; the call was forgotten.
    #[error("timed out after {after:?} waiting for {call}")]
    Timeout {
        /// The call that timed out.
        call: CallInfo,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// The connection was closed with a close frame (by the server, or by us
    /// with [`Close`](crate::Close)) while the call was pending or before it
    /// was sent.
    #[error("connection closed (code {code}{}){}", close_reason(.reason), Waiting(.call))]
    Closed {
        /// The websocket close code (1000 normal, 1001 going away, 1009 too big…).
        code: u16,
        /// The reason text of the close frame (may be empty).
        reason: String,
        /// The call that was waiting, if any.
        call: Option<CallInfo>,
    },

    /// The socket went away without a close frame (dropped TCP connection, or
    /// a websocket protocol violation by the peer).
    #[error("connection lost{}", Waiting(.call))]
    Disconnected {
        /// The call that was waiting, if any.
        call: Option<CallInfo>,
        /// What ended the connection, if known.
        #[source]
        source: Option<BoxError>,
    },

    /// We closed the connection, but the server did not finish the closing
    /// handshake in time; the socket was dropped anyway.
    #[error("the server did not answer our close frame within {after:?}")]
    CloseTimeout {
        /// The close timeout that elapsed.
        after: Duration,
    },

    /// The connection has stopped; nothing can be sent on it any more.
    #[error("not connected: the connection has stopped, so '{method}' was not sent")]
    NotConnected {
        /// The method that could not be sent.
        method: Cow<'static, str>,
    },

    /// The server's reply to the call broke the JSON-RPC 2.0 rules (for
    /// example it had both `result` and `error`).
    #[error("invalid response to {call}: {reason}")]
    InvalidResponse {
        /// The call whose response was invalid.
        call: CallInfo,
        /// What was wrong with it.
        reason: String,
    },

    /// The server answered the batch this call was in, but not this call.
    #[error("the server's answer to the batch had no response for {call}")]
    MissingResponse {
        /// The call left unanswered.
        call: CallInfo,
    },

    /// A message exceeded the configured size limit. For an inbound message
    /// the connection is closed with code 1009 and every pending call fails
    /// with this error; for an outbound one only that call fails.
    #[error("{} of {size} bytes exceeds the limit of {limit} bytes{}",
        if *.inbound { "message from the server" } else { "request" }, Waiting(.call))]
    MessageTooLarge {
        /// The size seen so far (inbound) or the request's size (outbound).
        size: u64,
        /// The configured limit.
        limit: usize,
        /// `true` when the server sent it, `false` for our own request.
        inbound: bool,
        /// The call concerned, if known.
        call: Option<CallInfo>,
    },

    /// The call's params could not be serialized or had the wrong shape.
    #[error("invalid params for '{method}': {reason}")]
    InvalidParams {
        /// The method the params were for.
        method: Cow<'static, str>,
        /// What was wrong.
        reason: String,
    },

    /// The result could not be decoded as the type the caller asked for.
    #[error("could not decode the result of {call} as {target}")]
    Decode {
        /// The call whose result it was.
        call: CallInfo,
        /// The Rust type asked for.
        target: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A bound of the connection was full, so the call or notification was
    /// not sent: with [`Backpressure::Fail`](crate::Backpressure::Fail) at
    /// once, with [`Backpressure::Wait`](crate::Backpressure::Wait) (the
    /// default) for a notification that found no room within the request
    /// timeout. (A call that waits too long ends with [`Error::Timeout`].)
    #[error("the limit of {bound} was reached, so '{method}' was not sent")]
    Overloaded {
        /// The bound that was full.
        bound: Bound,
        /// The method that was not sent.
        method: Cow<'static, str>,
    },

    /// A subscription's item could not be decoded as the type asked for; the
    /// subscription goes on (see [`SubscriptionItem::Invalid`](crate::SubscriptionItem::Invalid)).
    #[error("could not decode an item of {subscription} as {target}")]
    ItemDecode {
        /// The subscription.
        subscription: Box<SubscriptionInfo>,
        /// The Rust type asked for.
        target: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A close code or reason that may not be sent (RFC 6455 §7.4): nothing
    /// was sent and the connection is unchanged.
    #[error("invalid close frame: {reason}")]
    InvalidClose {
        /// What is wrong with it.
        reason: String,
    },

    /// A [`blocking`](crate::blocking) method was called on a thread that
    /// runs an async runtime, where blocking would stall every task of that
    /// thread (or deadlock): nothing was done. Use the async
    /// [`Client`](crate::Client) there, or block on a thread of your own.
    #[error(
        "the blocking client refused to {operation}: this thread runs {runtime}, which blocking would stall; use the async Client here"
    )]
    BlockingInAsync {
        /// What was asked: `"call"`, `"notify"`, `"connect"`, …
        operation: &'static str,
        /// Which runtime: `"a tokio runtime"` or `"an actix System"`.
        runtime: &'static str,
    },
}

/// Which bound refused a call or a notification (see [`Error::Overloaded`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// `max_in_flight` calls were already waiting for their responses.
    InFlight(usize),
    /// `max_queued_bytes` outbound bytes were already queued for the socket.
    QueuedBytes(usize),
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::InFlight(n) => write!(f, "{n} calls in flight"),
            Bound::QueuedBytes(n) => write!(f, "{n} queued outbound bytes"),
        }
    }
}

fn close_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl Error {
    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether the connection is gone (closed, lost or stopped): the call may
    /// or may not have reached the server.
    pub fn is_disconnect(&self) -> bool {
        matches!(
            self,
            Error::Closed { .. } | Error::Disconnected { .. } | Error::NotConnected { .. }
        )
    }

    /// The server's error object, for [`Error::Rpc`].
    pub fn rpc_error(&self) -> Option<&ErrorObject> {
        match self {
            Error::Rpc { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The websocket close code, for [`Error::Closed`].
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Closed { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status of a rejected handshake, for [`Error::Handshake`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Handshake { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The call this error is about, when there is one.
    pub fn call(&self) -> Option<&CallInfo> {
        match self {
            Error::Rpc { call, .. }
            | Error::MissingResponse { call }
            | Error::Timeout { call, .. }
            | Error::InvalidResponse { call, .. }
            | Error::Decode { call, .. } => Some(call),
            Error::Closed { call, .. }
            | Error::Disconnected { call, .. }
            | Error::MessageTooLarge { call, .. } => call.as_ref(),
            _ => None,
        }
    }

    /// The same connection-wide failure, told to one more waiting call.
    /// Errors that cannot be shared (they own a source) become `Disconnected`
    /// with the original text.
    pub(crate) fn for_call(&self, call: CallInfo) -> Error {
        match self {
            Error::Closed { code, reason, .. } => Error::Closed {
                code: *code,
                reason: reason.clone(),
                call: Some(call),
            },
            Error::MessageTooLarge {
                size,
                limit,
                inbound,
                ..
            } => Error::MessageTooLarge {
                size: *size,
                limit: *limit,
                inbound: *inbound,
                call: Some(call),
            },
            Error::Disconnected { source, .. } => Error::Disconnected {
                call: Some(call),
                source: source
                    .as_deref()
                    .map(|s| Box::new(Cause::of(s)) as BoxError),
            },
            other => Error::Disconnected {
                call: Some(call),
                source: Some(Box::new(Cause::of(other))),
            },
        }
    }
}

/// The error's text and that of each `source()`, joined with ": ", leaving
/// out a cause whose text its parent already ends with.
pub(crate) fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// A connection-wide cause, copied to each call it failed: the text of the
/// original error and of its sources, since errors cannot be cloned.
#[derive(Debug)]
pub(crate) struct Cause(String);

impl Cause {
    pub(crate) fn of(err: &(dyn std::error::Error + 'static)) -> Cause {
        let mut text = err.to_string();
        let mut next = err.source();
        while let Some(err) = next {
            text.push_str(": ");
            text.push_str(&err.to_string());
            next = err.source();
        }
        Cause(text)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallInfo {
        CallInfo {
            method: "sleep".into(),
            id: 1,
        }
    }

    #[test]
    fn errors_are_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
        assert!(
            std::mem::size_of::<Error>() <= 72,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn messages_name_the_call_and_the_cause() {
        let table = [
            (
                Error::Timeout {
                    call: call(),
                    after: Duration::from_secs(1),
                },
                "timed out after 1s waiting for 'sleep' (id 1)",
            ),
            (
                Error::Closed {
                    code: 4000,
                    reason: "bye".into(),
                    call: Some(call()),
                },
                "connection closed (code 4000: bye) while waiting for 'sleep' (id 1)",
            ),
            (
                Error::Closed {
                    code: 1000,
                    reason: String::new(),
                    call: None,
                },
                "connection closed (code 1000)",
            ),
            (
                Error::Rpc {
                    call: call(),
                    error: Box::new(ErrorObject::new(-32000, "boom")),
                },
                "'sleep' (id 1) failed on the server: error -32000: boom",
            ),
            (
                Error::MessageTooLarge {
                    size: 20,
                    limit: 10,
                    inbound: true,
                    call: Some(call()),
                },
                "message from the server of 20 bytes exceeds the limit of 10 bytes while waiting for 'sleep' (id 1)",
            ),
            (
                Error::Disconnected {
                    call: None,
                    source: None,
                },
                "connection lost",
            ),
            (
                Error::Overloaded {
                    bound: Bound::InFlight(2),
                    method: "m".into(),
                },
                "the limit of 2 calls in flight was reached, so 'm' was not sent",
            ),
            (
                Error::Overloaded {
                    bound: Bound::QueuedBytes(1024),
                    method: "n".into(),
                },
                "the limit of 1024 queued outbound bytes was reached, so 'n' was not sent",
            ),
            (
                Error::InvalidClose {
                    reason: "code 1005 may not be sent".into(),
                },
                "invalid close frame: code 1005 may not be sent",
            ),
            (
                Error::BlockingInAsync {
                    operation: "call",
                    runtime: "a tokio runtime",
                },
                "the blocking client refused to call: this thread runs a tokio runtime, which blocking would stall; use the async Client here",
            ),
        ];
        for (err, text) in table {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn shared_failures_keep_their_kind_per_call() {
        let closed = Error::Closed {
            code: 1011,
            reason: "oops".into(),
            call: None,
        };
        let err = closed.for_call(call());
        assert!(matches!(
            err,
            Error::Closed {
                code: 1011,
                call: Some(_),
                ..
            }
        ));
        let lost = Error::Disconnected {
            call: None,
            source: None,
        }
        .for_call(call());
        assert_eq!(lost.call(), Some(&call()));
    }

    fn decode_error() -> serde_json::Error {
        serde_json::from_str::<u8>("\"x\"").unwrap_err()
    }

    #[test]
    fn every_other_message_names_what_went_wrong() {
        let table = [
            (
                Error::InvalidConfig {
                    reason: "bad url".into(),
                },
                "invalid configuration: bad url".to_owned(),
            ),
            (
                Error::Transport {
                    context: "could not connect to ws://h/".into(),
                    source: "refused".into(),
                },
                "could not connect to ws://h/".to_owned(),
            ),
            (
                Error::Handshake {
                    url: "ws://h/".into(),
                    status: 401,
                },
                "websocket handshake with ws://h/ was rejected with HTTP status 401".to_owned(),
            ),
            (
                Error::CloseTimeout {
                    after: Duration::from_secs(2),
                },
                "the server did not answer our close frame within 2s".to_owned(),
            ),
            (
                Error::NotConnected { method: "m".into() },
                "not connected: the connection has stopped, so 'm' was not sent".to_owned(),
            ),
            (
                Error::InvalidResponse {
                    call: call(),
                    reason: "no result".into(),
                },
                "invalid response to 'sleep' (id 1): no result".to_owned(),
            ),
            (
                Error::MissingResponse { call: call() },
                "the server's answer to the batch had no response for 'sleep' (id 1)".to_owned(),
            ),
            (
                Error::MessageTooLarge {
                    size: 20,
                    limit: 10,
                    inbound: false,
                    call: None,
                },
                "request of 20 bytes exceeds the limit of 10 bytes".to_owned(),
            ),
            (
                Error::InvalidParams {
                    method: "m".into(),
                    reason: "not an array or object".into(),
                },
                "invalid params for 'm': not an array or object".to_owned(),
            ),
            (
                Error::Decode {
                    call: call(),
                    target: "u8",
                    source: decode_error(),
                },
                "could not decode the result of 'sleep' (id 1) as u8".to_owned(),
            ),
            (
                Error::ItemDecode {
                    subscription: Box::new(SubscriptionInfo {
                        method: "sub".into(),
                        id: crate::protocol::Id::from(7u64),
                    }),
                    target: "u8",
                    source: decode_error(),
                },
                "could not decode an item of subscription 7 of 'sub' as u8".to_owned(),
            ),
            (
                Error::Disconnected {
                    call: Some(call()),
                    source: Some("reset".into()),
                },
                "connection lost while waiting for 'sleep' (id 1)".to_owned(),
            ),
        ];
        for (err, text) in table {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn accessors_answer_only_for_their_variants() {
        let rpc = Error::Rpc {
            call: call(),
            error: Box::new(ErrorObject::new(-32000, "boom")),
        };
        assert_eq!(rpc.rpc_error().map(|e| e.code), Some(-32000));
        assert_eq!(rpc.close_code(), None);
        assert_eq!(rpc.status(), None);
        assert!(!rpc.is_timeout() && !rpc.is_disconnect());

        let handshake = Error::Handshake {
            url: "ws://h/".into(),
            status: 403,
        };
        assert_eq!(handshake.status(), Some(403));
        assert_eq!(handshake.call(), None);
        assert!(handshake.rpc_error().is_none());

        let with_call = [
            rpc,
            Error::MissingResponse { call: call() },
            Error::Timeout {
                call: call(),
                after: Duration::from_secs(1),
            },
            Error::InvalidResponse {
                call: call(),
                reason: "r".into(),
            },
            Error::Decode {
                call: call(),
                target: "u8",
                source: decode_error(),
            },
            Error::MessageTooLarge {
                size: 2,
                limit: 1,
                inbound: true,
                call: Some(call()),
            },
        ];
        for err in &with_call {
            assert_eq!(err.call(), Some(&call()), "{err}");
        }
        let not_connected = Error::NotConnected { method: "m".into() };
        assert!(not_connected.is_disconnect());
        assert_eq!(not_connected.call(), None);
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn chain_text_joins_causes_without_repeating_a_suffix() {
        let err = Layer(
            "connect failed: refused",
            Some(Box::new(Layer(
                "refused",
                Some(Box::new(Layer("os error 111", None))),
            ))),
        );
        assert_eq!(chain_text(&err), "connect failed: refused: os error 111");
        assert_eq!(
            Cause::of(&err).to_string(),
            "connect failed: refused: refused: os error 111"
        );
    }

    #[test]
    fn an_unshareable_failure_becomes_disconnected_with_its_whole_text() {
        let transport = Error::Transport {
            context: "read failed".into(),
            source: Box::new(Layer("reset", None)),
        };
        let err = transport.for_call(call());
        assert!(matches!(err, Error::Disconnected { call: Some(_), .. }));
        let source = std::error::Error::source(&err).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("read failed: reset"));

        let lost = Error::Disconnected {
            call: None,
            source: Some(Box::new(Layer("eof", None))),
        }
        .for_call(call());
        let source = std::error::Error::source(&lost).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("eof"));

        let big = Error::MessageTooLarge {
            size: 9,
            limit: 8,
            inbound: true,
            call: None,
        }
        .for_call(call());
        assert!(matches!(
            big,
            Error::MessageTooLarge {
                size: 9,
                limit: 8,
                call: Some(_),
                ..
            }
        ));
    }
}
