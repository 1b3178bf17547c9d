//! Publisher authentication for `--feed tcp://`: a shared secret on the first line.
//!
//! A feed reachable beyond loopback would let anyone set every price; with a
//! secret configured (`--feed-secret-file` or `TICKCAST_FEED_SECRET`) a
//! publisher's first line must be `{"auth":"<secret>"}`. The comparison takes
//! the same time whatever the guess: both sides go through HMAC-SHA256 under
//! a per-process key and the digests are compared in constant time, so
//! neither a matching prefix nor the secret's length shows in the timing.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::borrow::Cow;
use std::time::Duration;

/// How long a publisher has to send its `auth` line.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

type HmacSha256 = Hmac<Sha256>;

/// The configured feed secret, kept only as a keyed digest.
pub struct FeedSecret {
    key: [u8; 32],
    digest: [u8; 32],
}

impl std::fmt::Debug for FeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedSecret(…)")
    }
}

#[derive(Deserialize)]
struct AuthLine<'a> {
    #[serde(borrow)]
    auth: Cow<'a, str>,
}

impl FeedSecret {
    pub fn new(secret: &[u8]) -> FeedSecret {
        // The key only keeps the compared digests unpredictable; constant
        // time comes from `verify_slice`.
        let mut key = [0u8; 32];
        key.iter_mut().for_each(|b| *b = fastrand::u8(..));
        FeedSecret {
            digest: Self::mac(&key, secret).finalize().into_bytes().into(),
            key,
        }
    }

    fn mac(key: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
        mac.update(data);
        mac
    }

    /// Whether `candidate` is the secret, in time independent of how much of it matches.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        Self::mac(&self.key, candidate)
            .verify_slice(&self.digest)
            .is_ok()
    }

    /// Whether a line (without its `\n`) is `{"auth":"<the secret>"}`; the
    /// secret is compared after JSON decoding, so it may hold any character.
    pub fn accepts_line(&self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        serde_json::from_slice::<AuthLine>(line).is_ok_and(|l| self.matches(l.auth.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_in_an_auth_line_passes() {
        let s = FeedSecret::new(b"s3cr\"et");
        assert!(s.accepts_line(br#"{"auth":"s3cr\"et"}"#));
        assert!(s.accepts_line(b"{\"auth\":\"s3cr\\\"et\"}\r"));
        for bad in [
            &br#"{"auth":"s3cr\"e"}"#[..],
            br#"{"auth":"s3cr\"et "}"#,
            br#"{"auth":""}"#,
            br#"{"auth":1}"#,
            br#"{"symbol":"AAPL","bid":1}"#,
            b"s3cr\"et",
            b"",
            b"[[[[[[[[",
        ] {
            assert!(!s.accepts_line(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(format!("{s:?}").find("s3cr").is_none());
    }
}
