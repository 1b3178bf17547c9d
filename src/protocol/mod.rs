//! The protocol as values (protocol §3, §4): what clients ask ([`request`])
//! and what the server says ([`message`]), before any encoding or framing.
//! The same values leave as JSON or MessagePack, over WebSocket or
//! Server-Sent Events ([`crate::encoding`], [`crate::transport`]).

pub mod message;
pub mod request;

pub use message::Message;
pub use request::{parse_client_message, ClientMessage};

/// `error` codes (protocol §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    UnknownType,
    InvalidSymbol,
    Forbidden,
    TooManySymbols,
    Unauthorized,
    RateLimited,
    UnknownSymbol,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownType,
        ErrorCode::InvalidSymbol,
        ErrorCode::Forbidden,
        ErrorCode::TooManySymbols,
        ErrorCode::Unauthorized,
        ErrorCode::RateLimited,
        ErrorCode::UnknownSymbol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidSymbol => "invalid_symbol",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManySymbols => "too_many_symbols",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownSymbol => "unknown_symbol",
        }
    }
}

/// A request the server answers with `error`.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestError {
    pub id: Option<i64>,
    pub code: ErrorCode,
    /// The symbols at fault, if the error is about symbols.
    pub symbols: Vec<String>,
    pub message: String,
}

impl RequestError {
    pub fn new(id: Option<i64>, code: ErrorCode, message: impl Into<String>) -> RequestError {
        RequestError {
            id,
            code,
            symbols: Vec::new(),
            message: message.into(),
        }
    }

    /// One error for every symbol of a request that failed the same way
    /// (one reply per request and code, however many symbols: replies to one
    /// request always fit the client's control queue).
    pub fn for_symbols(
        id: Option<i64>,
        code: ErrorCode,
        symbols: Vec<String>,
        message: impl Into<String>,
    ) -> RequestError {
        RequestError {
            id,
            code,
            symbols,
            message: message.into(),
        }
    }
}
