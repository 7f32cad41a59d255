//! JSON-RPC 2.0 wire types and codecs, with no I/O.
//!
//! Everything here turns text into values and values into text; the
//! connection actor owns all sockets and timers. That keeps this module
//! testable with plain tables of strings.

mod decode;
mod encode;
mod error_object;
mod id;
mod inbound;
mod params;
pub(crate) mod scan;

pub use decode::RawResult;
pub use error_object::ErrorObject;
pub use id::Id;
pub(crate) use id::IdHasher;
pub use inbound::{parse, Inbound, Message, Notification, Request};
pub use params::{Params, ParamsBuilder};

#[cfg(feature = "bench-internals")]
pub use encode::{encode_request, encode_result_response};
pub use encode::{write_error_response, write_request, write_result_response, REQUEST_ROOM};

/// Standard JSON-RPC 2.0 error codes.
pub mod codes {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON sent is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist or is not available.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
}
