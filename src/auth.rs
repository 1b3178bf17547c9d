//! Tokens and entitlements (protocol §2): HS256 JWTs, one-time query tokens.
//!
//! A JWT here is three base64url parts; only `HS256` is accepted (never
//! `none`), the signature is checked in constant time by `hmac`, and `exp`
//! is required. Query-string tokens end up in logs and browser history, so
//! they must be short-lived and carry a `jti` that is accepted only once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// Longest lifetime of a query-string token, in seconds.
pub const MAX_QUERY_TOKEN_TTL: u64 = 300;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
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

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    QueryTokenTooLong,
    QueryTokenWithoutJti,
    Replayed,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::QueryTokenTooLong => "query-string tokens must expire within 300 s",
            TokenError::QueryTokenWithoutJti => "query-string tokens need a jti",
            TokenError::Replayed => "token already used",
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
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{body}");
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(signing_input.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Checks tokens against the configured secret; remembers used `jti`s.
pub struct Authenticator {
    secret: Option<Vec<u8>>,
    used_jti: Mutex<HashMap<String, u64>>,
}

impl Authenticator {
    pub fn new(secret: Option<Vec<u8>>) -> Authenticator {
        Authenticator {
            secret,
            used_jti: Mutex::new(HashMap::new()),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    /// Verifies signature and expiry (at `now`, seconds since the epoch).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let secret = self.secret.as_deref().ok_or(TokenError::Malformed)?;
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::Malformed);
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
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Verifies a token given in the URL: short-lived, with a `jti` never seen before.
    pub fn verify_query_token(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let claims = self.verify(token, now)?;
        if claims.exp.saturating_sub(claims.iat.unwrap_or(now)) > MAX_QUERY_TOKEN_TTL {
            return Err(TokenError::QueryTokenTooLong);
        }
        let jti = claims.jti.clone().ok_or(TokenError::QueryTokenWithoutJti)?;
        let mut used = self.used_jti.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() > 10_000 {
            // Expired entries can never be replayed: the token is refused as expired.
            used.retain(|_, exp| *exp > now);
        }
        if used.contains_key(&jti) {
            return Err(TokenError::Replayed);
        }
        used.insert(jti, claims.exp);
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
            jti: Some("j1".into()),
            symbols: None,
        }
    }

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not() {
        let a = Authenticator::new(Some(b"secret".to_vec()));
        let t = sign(b"secret", &claims(NOW + 60));
        assert_eq!(a.verify(&t, NOW).unwrap().sub, "alice");
        assert_eq!(
            a.verify(&sign(b"other", &claims(NOW + 60)), NOW),
            Err(TokenError::BadSignature)
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64.encode(br#"{"sub":"mallory","exp":9999999999}"#);
        parts[1] = &forged;
        assert_eq!(
            a.verify(&parts.join("."), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(a.verify("a.b", NOW), Err(TokenError::Malformed));
        assert_eq!(a.verify(&t, NOW + 60), Err(TokenError::Expired));
    }

    #[test]
    fn alg_none_is_refused() {
        let a = Authenticator::new(Some(b"secret".to_vec()));
        let h = B64.encode(br#"{"alg":"none"}"#);
        let b = B64.encode(serde_json::to_vec(&claims(NOW + 60)).unwrap());
        assert_eq!(
            a.verify(&format!("{h}.{b}."), NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn query_tokens_are_short_lived_and_one_time() {
        let a = Authenticator::new(Some(b"s".to_vec()));
        let t = sign(b"s", &claims(NOW + 300));
        assert!(a.verify_query_token(&t, NOW).is_ok());
        assert_eq!(a.verify_query_token(&t, NOW), Err(TokenError::Replayed));
        let long = sign(
            b"s",
            &Claims {
                jti: Some("j2".into()),
                ..claims(NOW + 301)
            },
        );
        assert_eq!(
            a.verify_query_token(&long, NOW),
            Err(TokenError::QueryTokenTooLong)
        );
        let no_iat = sign(
            b"s",
            &Claims {
                iat: None,
                jti: Some("j3".into()),
                ..claims(NOW + 400)
            },
        );
        assert_eq!(
            a.verify_query_token(&no_iat, NOW),
            Err(TokenError::QueryTokenTooLong)
        );
        assert!(
            a.verify_query_token(&no_iat, NOW + 200).is_ok(),
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
            a.verify_query_token(&no_jti, NOW),
            Err(TokenError::QueryTokenWithoutJti)
        );
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
