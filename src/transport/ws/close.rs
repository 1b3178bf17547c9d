//! Close codes (protocol §7, RFC 6455 §7.4): the ones the server sends, and
//! which ones a client may send. SSE streams end with the same codes in their
//! `close` event, so these are the protocol's reasons for ending a session.

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED_DATA: u16 = 1003;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const TOO_BIG: u16 = 1009;
/// Try again later (IANA): what an SSE stream refused for capacity or
/// shutdown says in its `close` event.
pub const TRY_AGAIN_LATER: u16 = 1013;
pub const SLOW_CONSUMER: u16 = 4008;
pub const UNAUTHORIZED: u16 = 4401;
pub const RATE_LIMITED: u16 = 4429;

/// Whether a peer may send this close code (RFC 6455 §7.4: 1000–1003,
/// 1007–1011, the IANA-registered 1012–1014, and 3000–4999 for libraries and
/// applications; never 1004–1006 or 1015, which mean "no code" or "no close").
pub fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
