//! Tokens for a server with authentication on: a fresh one for every
//! connection attempt (a `jti` is accepted once), so that a storm is
//! measured with the handshake's real cost (a signature check per upgrade).
//!
//! The secret reaches the workers through the environment
//! (`TICKCAST_AUTH_SECRET`), never on a command line others can read.

use serde::{Deserialize, Serialize};
use tickcast::auth::{sign, Claims};

/// The variable the secret travels in, coordinator to workers.
pub const SECRET_VAR: &str = "TICKCAST_AUTH_SECRET";

/// How tokens are made and where they go (the secret is not part of it).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSpec {
    pub ttl_secs: u64,
    /// In `?token=` rather than `Authorization: Bearer`.
    pub in_query: bool,
}

/// Makes tokens with one secret.
pub struct Minter {
    secret: Vec<u8>,
    spec: TokenSpec,
}

impl Minter {
    pub fn new(secret: Vec<u8>, spec: TokenSpec) -> Minter {
        Minter { secret, spec }
    }

    /// A one-time token for connection `n`, entitled to everything, made
    /// for where the spec puts it.
    pub fn mint(&self, n: u64) -> String {
        self.mint_for(n, self.spec.in_query)
    }

    /// A one-time token for `?token=`: the server takes those only when they
    /// expire within [`tickcast::auth::MAX_QUERY_TOKEN_TTL`] (they are used
    /// once, at the upgrade; the connection then ends at its `exp` unless
    /// refreshed, so header tokens are the choice for long runs).
    pub fn mint_for_query(&self, n: u64) -> String {
        self.mint_for(n, true)
    }

    fn mint_for(&self, n: u64, in_query: bool) -> String {
        let ttl = if in_query {
            self.spec.ttl_secs.min(tickcast::auth::MAX_QUERY_TOKEN_TTL)
        } else {
            self.spec.ttl_secs
        };
        let now = tickcast::clock::now_secs();
        sign(
            &self.secret,
            &Claims {
                sub: format!("loadgen-{n}"),
                exp: now + ttl,
                iat: Some(now),
                nbf: None,
                jti: Some(format!("{:032x}", fastrand::u128(..))),
                symbols: None,
            },
        )
    }

    pub fn in_query(&self) -> bool {
        self.spec.in_query
    }
}

/// The request target and extra header lines of an upgrade carrying `token`.
pub fn place(path: &str, token: Option<(&str, bool)>) -> (String, String) {
    match token {
        None => (path.to_string(), String::new()),
        Some((t, true)) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            (format!("{path}{sep}token={t}"), String::new())
        }
        Some((t, false)) => (path.to_string(), format!("Authorization: Bearer {t}\r\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_differ() {
        let m = Minter::new(
            b"s3cret".to_vec(),
            TokenSpec {
                ttl_secs: 60,
                in_query: false,
            },
        );
        let (a, b) = (m.mint(1), m.mint(1));
        assert_ne!(a, b, "a fresh jti each time");
        let auth = tickcast::auth::Authenticator::new(Some(b"s3cret".to_vec()));
        let now = tickcast::clock::now_secs();
        assert!(auth
            .verify(&a, now, tickcast::auth::TokenUse::Header)
            .is_ok());
        assert!(auth
            .verify(&b, now, tickcast::auth::TokenUse::Header)
            .is_ok());
    }

    #[test]
    fn placed_in_the_query_or_a_header() {
        assert_eq!(place("/ws", None), ("/ws".into(), String::new()));
        assert_eq!(
            place("/ws", Some(("T", true))),
            ("/ws?token=T".into(), String::new())
        );
        assert_eq!(place("/ws?x=1", Some(("T", true))).0, "/ws?x=1&token=T");
        assert_eq!(
            place("/ws", Some(("T", false))),
            ("/ws".into(), "Authorization: Bearer T\r\n".into())
        );
    }
}
