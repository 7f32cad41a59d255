use std::fmt;

use serde::{Deserialize, Serialize};

/// A request id as it appears on the wire.
///
/// Our own calls always use [`Id::Number`] with a per-connection counter;
/// servers may use any of the three forms for the requests they send us, and
/// the answer must carry the id back exactly as it came.
///
/// # Examples
///
/// ```
/// use jsonrpc_websocket::Id;
///
/// let id: Id = serde_json::from_str(r#""abc""#).unwrap();
/// assert_eq!(id, Id::String("abc".into()));
/// assert_eq!(serde_json::to_string(&Id::Number(7.into())).unwrap(), "7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// A numeric id (integers are the norm; other numbers are kept as sent).
    Number(serde_json::Number),
    /// A string id.
    String(String),
    /// `null`: used by a peer that could not read the id of a request.
    Null,
}

impl Id {
    /// The id as an unsigned integer, if it is one (the shape of our own ids).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Id::Number(n) => n.as_u64(),
            _ => None,
        }
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Self {
        Id::Number(n.into())
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
            Id::Null => f.write_str("null"),
        }
    }
}
