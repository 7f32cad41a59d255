use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::codes;

/// A JSON-RPC 2.0 error object: what a server returns instead of a result,
/// and what our handlers return to refuse a server's request.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::ErrorObject;
///
/// let err = ErrorObject::new(-32000, "disk full").with_data(&serde_json::json!({"free": 0}));
/// assert_eq!(err.code, -32000);
/// assert_eq!(err.data_as::<serde_json::Value>().unwrap()["free"], 0);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code; -32768 to -32000 are reserved by the specification.
    pub code: i64,
    /// A short description of the error.
    pub message: String,
    /// Optional extra information, kept as the raw JSON the peer sent
    /// (`"data": null` is kept as `Some(null)`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub data: Option<Box<RawValue>>,
}

/// `Some` whenever the member is present, even as `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl ErrorObject {
    /// An error object with a code and a message and no data.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Attaches `data`, serialized to JSON. If `data` cannot be serialized,
    /// the error object is returned unchanged (an error about an error must
    /// not fail).
    pub fn with_data<T: Serialize + ?Sized>(mut self, data: &T) -> Self {
        self.data = serde_json::value::to_raw_value(data).ok();
        self
    }

    /// -32601: the method does not exist; the message names it.
    pub fn method_not_found(method: &str) -> Self {
        ErrorObject::new(
            codes::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )
    }

    /// -32602: the parameters do not fit the method.
    pub fn invalid_params(reason: impl fmt::Display) -> Self {
        ErrorObject::new(codes::INVALID_PARAMS, format!("invalid params: {reason}"))
    }

    /// -32600: the message is not a valid request object.
    pub fn invalid_request(reason: impl fmt::Display) -> Self {
        ErrorObject::new(codes::INVALID_REQUEST, format!("invalid request: {reason}"))
    }

    /// -32603: an internal error on our side.
    pub fn internal(reason: impl fmt::Display) -> Self {
        ErrorObject::new(codes::INTERNAL_ERROR, format!("internal error: {reason}"))
    }

    /// The `data` member decoded as `T`, or `None` if there is none or it does
    /// not fit `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        self.data
            .as_ref()
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

impl PartialEq for ErrorObject {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.message == other.message
            && self.data.as_ref().map(|d| d.get()) == other.data.as_ref().map(|d| d.get())
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {}: {}", self.code, self.message)?;
        if let Some(data) = &self.data {
            write!(f, " (data: {})", data.get())?;
        }
        Ok(())
    }
}
