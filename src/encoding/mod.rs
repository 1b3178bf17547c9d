//! How a message becomes bytes, apart from how they travel: JSON or
//! MessagePack, the same messages and fields either way.
//!
//! An encoding writes a whole `tick` (the hot path: straight from its state,
//! once per update and form, shared by every subscriber of that form) and
//! every other message (from [`Message::to_value`]). To add one, write a
//! file with an [`Encoding`] and list it in [`ENCODINGS`]; a WebSocket
//! client chooses it by its [`Encoding::name`] in `Sec-WebSocket-Protocol`.

pub mod json;
pub mod msgpack;

use crate::protocol::Message;
use crate::tick::TickState;

/// A way of writing messages.
pub trait Encoding: Sync {
    /// What a client names in `Sec-WebSocket-Protocol` to get it.
    fn name(&self) -> &'static str;
    /// Binary bytes (WebSocket binary frames), or text.
    fn binary(&self) -> bool;
    /// A whole `tick` message.
    fn tick(&self, symbol: &str, state: &TickState, snapshot: bool, out: &mut Vec<u8>);
    /// A whole message of any other type.
    fn message(&self, m: &Message, out: &mut Vec<u8>);
}

/// Every encoding, the default first. An index into this list names an
/// encoding wherever one is stored.
pub static ENCODINGS: [&dyn Encoding; 2] = [&json::Json, &msgpack::MsgPack];

/// The index of JSON, the default.
pub const JSON: usize = 0;

/// The index of the encoding a client names, if there is one by that name.
pub fn by_name(name: &str) -> Option<usize> {
    ENCODINGS.iter().position(|e| e.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_found_by_name_json_first() {
        assert_eq!(by_name("tickcast.json"), Some(JSON));
        assert_eq!(by_name("tickcast.msgpack"), Some(1));
        assert_eq!(by_name("tickcast.xml"), None);
        assert!(!ENCODINGS[JSON].binary());
    }
}
