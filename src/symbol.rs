//! Symbol names: validation and an inline, allocation-free representation.
//!
//! Symbols are 1 to 32 characters from `A-Z a-z 0-9 . _ : / -` (protocol §3).
//! Every feed tick carries one, so [`Symbol`] keeps it inline (no heap) to
//! keep the ingest path allocation-free. None of the allowed characters needs
//! escaping in JSON, so a valid symbol can be written into output verbatim.

use std::fmt;

/// Longest symbol accepted, in bytes.
pub const MAX_LEN: usize = 32;

/// Whether `s` is a valid symbol name.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// A valid symbol stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Symbol {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl Symbol {
    /// Returns the symbol if `s` is valid.
    pub fn new(s: &str) -> Option<Symbol> {
        if !is_valid(s) {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Symbol {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `new`).
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_str())
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        for s in [
            "AAPL",
            "BRK.B",
            "FX:EUR/USD",
            "BTC-USD",
            "a_b",
            "X",
            &"Z".repeat(32),
        ] {
            assert!(is_valid(s), "{s}");
            assert_eq!(Symbol::new(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for s in [
            "",
            &"Z".repeat(33),
            "AA PL",
            "AAPL\"",
            "ÄPL",
            "A\\B",
            "A,B",
            "A*",
        ] {
            assert!(!is_valid(s), "{s:?}");
            assert!(Symbol::new(s).is_none());
        }
    }
}
