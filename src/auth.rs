//! Tokens and entitlements (protocol §2): HS256 JWTs, one-time `jti`s.
//!
//! A JWT here is three base64url parts; only `HS256` is accepted (never
//! `none`), a `crit` header is refused (no extension is understood, RFC 7515
//! §4.1.11), the signature is checked in constant time by `hmac`, and `exp`
//! is required. `nbf` and `iat` may not lie in the future by more than
//! [`LEEWAY_SECS`] of clock skew. Query-string tokens end up in logs and
//! browser history, so they must be short-lived and carry a `jti`. A `jti`
//! is accepted once, whichever way its token came (header, query string,
//! `auth` message, `/snapshot`): the set of used ones is bounded and each is
//! forgotten once its token has expired (it can never be accepted again).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// Longest lifetime of a query-string token, in seconds.
pub const MAX_QUERY_TOKEN_TTL: u64 = 300;

/// Clock skew allowed between the token issuer and this server: an `nbf` or
/// `iat` at most this many seconds in the future is accepted. `exp` gets no
/// grace: a token is refused from its `exp` on, and connections close then.
pub const LEEWAY_SECS: u64 = 30;

/// Most `jti`s remembered at once (each until its token expires). Beyond it,
/// new tokens with a `jti` are refused rather than an old one forgotten early.
pub const MAX_USED_JTIS: usize = 1_000_000;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbols: Option<Vec<String>>,
}

impl Claims {
    /// Whether the token entitles its holder to `symbol`.
    pub fn allows(&self, symbol: &str) -> bool {
        match &self.symbols {
            None => true,
            Some(list) => list.iter().any(|e| match e.strip_suffix('*') {
                Some(prefix) => symbol.starts_with(prefix),
                None => e == symbol,
            }),
        }
    }
}

/// How a token reached the server; query-string tokens have stricter rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// `Authorization: Bearer` on an HTTP request.
    Header,
    /// `?token=` on the URL.
    Query,
    /// An `auth` message on an open connection.
    Message,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    /// Not HS256, or a `crit` header.
    UnsupportedHeader,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    QueryTokenTooLong,
    QueryTokenWithoutJti,
    Replayed,
    /// [`MAX_USED_JTIS`] one-time tokens are live at once.
    TooManyTokens,
}

impl TokenError {
    pub const ALL: [TokenError; 10] = [
        TokenError::Malformed,
        TokenError::UnsupportedHeader,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::QueryTokenTooLong,
        TokenError::QueryTokenWithoutJti,
        TokenError::Replayed,
        TokenError::TooManyTokens,
    ];

    /// The `reason` label of `tickcast_auth_failures_total`.
    pub fn label(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::UnsupportedHeader => "unsupported_header",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::QueryTokenTooLong => "query_token_too_long",
            TokenError::QueryTokenWithoutJti => "query_token_without_jti",
            TokenError::Replayed => "replayed",
            TokenError::TooManyTokens => "too_many_tokens",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::UnsupportedHeader => {
                "unsupported token header: only alg HS256, without crit"
            }
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not valid yet (nbf is in the future)",
            TokenError::IssuedInFuture => "token issued in the future (iat)",
            TokenError::QueryTokenTooLong => "query-string tokens must expire within 300 s",
            TokenError::QueryTokenWithoutJti => "query-string tokens need a jti",
            TokenError::Replayed => "token already used (its jti was seen before)",
            TokenError::TooManyTokens => "too many one-time tokens in use: try again later",
        })
    }
}

/// The HS256 secret: from `--auth-secret-file`, else `TICKCAST_AUTH_SECRET`, else none.
pub fn load_secret(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, String> {
    load_secret_from(file, "--auth-secret-file", "TICKCAST_AUTH_SECRET")
}

/// A secret from `file` (given by the flag `flag`; trailing whitespace
/// trimmed, must not be empty), else from the variable `var` (unless empty),
/// else none. One convention for every secret of the command line.
pub fn load_secret_from(
    file: Option<&std::path::Path>,
    flag: &str,
    var: &str,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
        let trimmed = bytes.trim_ascii_end();
        if trimmed.is_empty() {
            return Err(format!("{flag} {}: the file is empty", path.display()));
        }
        return Ok(Some(trimmed.to_vec()));
    }
    match std::env::var(var) {
        Ok(s) if !s.is_empty() => Ok(Some(s.into_bytes())),
        _ => Ok(None),
    }
}

/// Signs claims into a token.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    sign_parts(
        secret,
        br#"{"alg":"HS256","typ":"JWT"}"#,
        &serde_json::to_vec(claims).unwrap_or_default(),
    )
}

/// Signs a header and a body, whatever they hold (tests and fuzzing make odd ones).
pub fn sign_parts(secret: &[u8], header: &[u8], body: &[u8]) -> String {
    let signing_input = format!("{}.{}", B64.encode(header), B64.encode(body));
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(signing_input.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// The token of an `Authorization` header value: scheme `Bearer`, matched
/// without regard to case (RFC 7235 §2.1), then the token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    crit: Option<serde_json::Value>,
}

/// `jti`s already accepted, until their tokens expire.
#[derive(Default)]
struct UsedJtis {
    /// A jti's SHA-256 (first 16 bytes; a jti may be long) and its token's `exp`.
    seen: HashMap<u128, u64>,
    /// The same, soonest expiry first, to forget them in O(log n) each.
    by_expiry: BinaryHeap<Reverse<(u64, u128)>>,
}

impl UsedJtis {
    fn use_once(&mut self, jti: &str, exp: u64, now: u64) -> Result<(), TokenError> {
        while let Some(Reverse((e, key))) = self.by_expiry.peek().copied() {
            if e > now {
                break;
            }
            self.by_expiry.pop();
            self.seen.remove(&key);
        }
        let digest = Sha256::digest(jti.as_bytes());
        let key = u128::from_be_bytes(digest[..16].try_into().unwrap_or_default());
        if self.seen.contains_key(&key) {
            return Err(TokenError::Replayed);
        }
        if self.seen.len() >= MAX_USED_JTIS {
            return Err(TokenError::TooManyTokens);
        }
        self.seen.insert(key, exp);
        self.by_expiry.push(Reverse((exp, key)));
        Ok(())
    }
}

/// Checks tokens against the configured secret; remembers used `jti`s.
pub struct Authenticator {
    secret: Option<Vec<u8>>,
    used: Mutex<UsedJtis>,
}

impl Authenticator {
    pub fn new(secret: Option<Vec<u8>>) -> Authenticator {
        Authenticator {
            secret,
            used: Mutex::new(UsedJtis::default()),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// Verifies a token that came by `how`, at `now` (seconds since the
    /// epoch), and uses up its `jti`. Every refusal is counted by reason.
    pub fn verify(&self, token: &str, now: u64, how: TokenUse) -> Result<Claims, TokenError> {
        let result = self.check(token, now, how).and_then(|claims| {
            if let Some(jti) = &claims.jti {
                let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
                used.use_once(jti, claims.exp, now)?;
            }
            Ok(claims)
        });
        if let Err(e) = result {
            crate::metrics::METRICS.auth_failure(e);
        }
        result
    }

    /// Every check but the `jti`'s single use: format, header, signature, times.
    pub fn check(&self, token: &str, now: u64, how: TokenUse) -> Result<Claims, TokenError> {
        let secret = self.secret.as_deref().ok_or(TokenError::Malformed)?;
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header =
            serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.alg.as_deref() != Some("HS256") || header.crit.is_some() {
            return Err(TokenError::UnsupportedHeader);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(b.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(b).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if claims.sub.is_empty() {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let skewed_now = now.saturating_add(LEEWAY_SECS);
        if claims.nbf.is_some_and(|nbf| nbf > skewed_now) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat.is_some_and(|iat| iat > skewed_now) {
            return Err(TokenError::IssuedInFuture);
        }
        if how == TokenUse::Query {
            // `iat` is at most `now + LEEWAY_SECS` here, so a query token lives
            // at most that much longer than the limit.
            if claims.exp.saturating_sub(claims.iat.unwrap_or(now)) > MAX_QUERY_TOKEN_TTL {
                return Err(TokenError::QueryTokenTooLong);
            }
            if claims.jti.is_none() {
                return Err(TokenError::QueryTokenWithoutJti);
            }
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            iat: Some(NOW),
            nbf: None,
            jti: Some("j1".into()),
            symbols: None,
        }
    }

    use TokenUse::{Header as H, Message as M, Query as Q};

    fn with(f: impl FnOnce(&mut Claims)) -> Claims {
        let mut c = claims(NOW + 60);
        f(&mut c);
        c
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let a = Authenticator::new(Some(b"secret".to_vec()));
        let t = sign(b"secret", &with(|c| c.jti = None));
        assert_eq!(a.verify(&t, NOW, H).unwrap().sub, "alice");
        assert_eq!(
            a.verify(&sign(b"other", &claims(NOW + 60)), NOW, H),
            Err(TokenError::BadSignature)
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"sub":"mallory","exp":9999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            a.verify(&parts.join("."), NOW, H),
            Err(TokenError::BadSignature)
        );
        assert_eq!(a.verify("a.b", NOW, H), Err(TokenError::Malformed));
        assert_eq!(a.verify(&t, NOW + 60, H), Err(TokenError::Expired));
        let empty_sub = sign(b"secret", &with(|c| c.sub = String::new()));
        assert_eq!(a.verify(&empty_sub, NOW, H), Err(TokenError::Malformed));
    }

    #[test]
    fn only_hs256_without_crit_is_accepted() {
        let a = Authenticator::new(Some(b"secret".to_vec()));
        let body = serde_json::to_vec(&claims(NOW + 60)).unwrap();
        for header in [
            &br#"{"alg":"none"}"#[..],
            br#"{"alg":"HS512"}"#,
            br#"{"typ":"JWT"}"#,
            br#"{"alg":"HS256","crit":["exp"]}"#,
            br#"{"alg":"HS256","crit":[]}"#,
        ] {
            let t = sign_parts(b"secret", header, &body);
            assert_eq!(
                a.verify(&t, NOW, H),
                Err(TokenError::UnsupportedHeader),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let h = B64.encode(br#"{"alg":"none"}"#);
        let b = B64.encode(&body);
        assert_eq!(
            a.verify(&format!("{h}.{b}."), NOW, H),
            Err(TokenError::UnsupportedHeader)
        );
    }

    #[test]
    fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
        let a = Authenticator::new(Some(b"s".to_vec()));
        let soon = NOW + LEEWAY_SECS;
        let later = soon + 1;
        let t = |f: &dyn Fn(&mut Claims)| {
            sign(
                b"s",
                &with(|c| {
                    c.jti = None;
                    c.exp = NOW + 3600;
                    f(c)
                }),
            )
        };
        assert!(a.verify(&t(&|c| c.nbf = Some(soon)), NOW, H).is_ok());
        assert_eq!(
            a.verify(&t(&|c| c.nbf = Some(later)), NOW, H),
            Err(TokenError::NotYetValid)
        );
        assert!(a.verify(&t(&|c| c.iat = Some(soon)), NOW, H).is_ok());
        assert_eq!(
            a.verify(&t(&|c| c.iat = Some(later)), NOW, H),
            Err(TokenError::IssuedInFuture)
        );
        // A query token with iat a year ahead would otherwise live a year.
        let year = NOW + 365 * 86400;
        let q = sign(
            b"s",
            &with(|c| {
                c.iat = Some(year);
                c.exp = year + 300;
            }),
        );
        assert_eq!(a.verify(&q, NOW, Q), Err(TokenError::IssuedInFuture));
    }

    #[test]
    fn query_tokens_are_short_lived_and_carry_a_jti() {
        let a = Authenticator::new(Some(b"s".to_vec()));
        let t = sign(b"s", &claims(NOW + 300));
        assert!(a.verify(&t, NOW, Q).is_ok());
        let long = sign(
            b"s",
            &Claims {
                jti: Some("j2".into()),
                ..claims(NOW + 301)
            },
        );
        assert_eq!(a.verify(&long, NOW, Q), Err(TokenError::QueryTokenTooLong));
        assert!(a.verify(&long, NOW, H).is_ok(), "fine in a header");
        let no_iat = sign(
            b"s",
            &Claims {
                iat: None,
                jti: Some("j3".into()),
                ..claims(NOW + 400)
            },
        );
        assert_eq!(
            a.verify(&no_iat, NOW, Q),
            Err(TokenError::QueryTokenTooLong)
        );
        assert!(
            a.verify(&no_iat, NOW + 200, Q).is_ok(),
            "without iat, measured from now"
        );
        let no_jti = sign(
            b"s",
            &Claims {
                jti: None,
                ..claims(NOW + 60)
            },
        );
        assert_eq!(
            a.verify(&no_jti, NOW, Q),
            Err(TokenError::QueryTokenWithoutJti)
        );
        assert!(a.verify(&no_jti, NOW, H).is_ok());
        assert!(a.verify(&no_jti, NOW, H).is_ok(), "no jti: not one-time");
    }

    #[test]
    fn a_jti_is_accepted_once_whichever_way_it_came() {
        for (first, second) in [(Q, H), (Q, M), (M, Q), (H, M), (M, M), (H, H)] {
            let a = Authenticator::new(Some(b"s".to_vec()));
            let t = sign(b"s", &claims(NOW + 100));
            assert!(a.verify(&t, NOW, first).is_ok(), "{first:?}");
            assert_eq!(
                a.verify(&t, NOW, second),
                Err(TokenError::Replayed),
                "{first:?} then {second:?}"
            );
        }
        // A refused token does not use up its jti.
        let a = Authenticator::new(Some(b"s".to_vec()));
        let long = sign(b"s", &claims(NOW + 1000));
        assert_eq!(a.verify(&long, NOW, Q), Err(TokenError::QueryTokenTooLong));
        assert!(a.verify(&long, NOW, H).is_ok());
    }

    #[test]
    fn used_jtis_are_forgotten_once_expired_and_bounded() {
        let mut used = UsedJtis::default();
        used.use_once("a", NOW + 10, NOW).unwrap();
        assert_eq!(
            used.use_once("a", NOW + 10, NOW + 9),
            Err(TokenError::Replayed)
        );
        used.use_once("b", NOW + 20, NOW + 10).unwrap();
        assert_eq!(used.seen.len(), 1, "a expired at NOW + 10 and is gone");
        for i in 0..MAX_USED_JTIS - 1 {
            used.seen.insert(i as u128, u64::MAX);
        }
        assert_eq!(
            used.use_once("c", NOW + 30, NOW + 10),
            Err(TokenError::TooManyTokens)
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer a.b.c"), Some("a.b.c"));
        assert_eq!(bearer_token("bearer a.b.c"), Some("a.b.c"));
        assert_eq!(bearer_token("BEARER  a.b.c "), Some("a.b.c"));
        assert_eq!(bearer_token("Basic dXNlcg=="), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearera.b.c"), None);
    }

    #[test]
    fn entitlements_with_prefixes() {
        let mut c = claims(NOW);
        assert!(c.allows("ANY"));
        c.symbols = Some(vec!["*".into()]);
        assert!(c.allows("ANY"));
        c.symbols = Some(vec!["AAPL".into(), "FX:*".into()]);
        assert!(c.allows("AAPL") && c.allows("FX:EUR/USD"));
        assert!(!c.allows("AAPL2") && !c.allows("MSFT") && !c.allows("FX"));
    }
}
