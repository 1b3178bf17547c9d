//! Which web pages may use this server: `--allowed-origins` and CORS.
//!
//! A browser always sends `Origin` on a WebSocket upgrade and on a
//! cross-origin `fetch`, and a page cannot forge it; other clients send none
//! (or whatever they like, which is why this is no authentication). So an
//! upgrade or a `/snapshot` call from a page whose origin is not allowed is
//! refused (403), which stops cross-site WebSocket hijacking where a
//! deployment leans on cookies or runs without auth. A request without
//! `Origin`, and a page served by this server itself (same origin as the
//! `Host` it asked for), are always allowed. `/snapshot` answers CORS for
//! the allowed origins, preflight (`OPTIONS`) included, so a front-end on
//! another origin can call it with an `Authorization` header.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::Response;

/// The pages allowed to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origins {
    /// Any page (the default).
    Any,
    /// These origins (`scheme://host[:port]`, lower case), and the server's own.
    List(Vec<String>),
}

impl Origins {
    /// Parses `*` or a comma-separated list of origins such as
    /// `https://app.example.com,http://localhost:3000`.
    pub fn parse(s: &str) -> Result<Origins, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Origins::Any);
        }
        let mut list = Vec::new();
        for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let lower = o.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ']) => {
                    list.push(lower)
                }
                _ => {
                    return Err(format!(
                        "`{o}` is not an origin: write scheme://host[:port], e.g. https://app.example.com"
                    ))
                }
            }
        }
        if list.is_empty() {
            return Err("no origin given: write * or a list of origins".into());
        }
        Ok(Origins::List(list))
    }

    /// Whether a request with these headers comes from an allowed page.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match self {
            Origins::Any => true,
            Origins::List(list) => {
                list.iter().any(|o| o.eq_ignore_ascii_case(origin)) || same_origin(origin, headers)
            }
        }
    }
}

/// Whether `origin` names the host the request was sent to (the page came from us).
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// A page's read (`/snapshot`, `/candles`): 403 for an origin not allowed
/// (without running `answer`), else `answer` with CORS headers.
pub async fn cors(
    req: &hyper::Request<hyper::body::Incoming>,
    state: &super::AppState,
    answer: impl std::future::Future<Output = super::Reply>,
) -> super::Reply {
    if !state.origins.allows(req.headers()) {
        return super::text(
            hyper::StatusCode::FORBIDDEN,
            "origin not allowed (--allowed-origins)",
        );
    }
    let mut r = answer.await;
    add_cors(&mut r, req.headers());
    r
}

/// Adds CORS headers for an allowed `Origin` (the caller has checked it).
pub fn add_cors<B>(response: &mut Response<B>, request: &HeaderMap) {
    let Some(origin) = request.get(header::ORIGIN) else {
        return;
    };
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    // Not on the CORS safelist: without this a page never reads it.
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Retry-After"),
    );
}

/// The extra headers of a preflight answer.
pub fn add_preflight<B>(response: &mut Response<B>) {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn lists_parse_and_bad_ones_are_named() {
        assert_eq!(Origins::parse("*").unwrap(), Origins::Any);
        assert_eq!(
            Origins::parse("https://App.example.com, http://localhost:3000").unwrap(),
            Origins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "",
            "example.com",
            "https://",
            "https://a.com/path",
            "ftp://a.com",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_same_and_missing_origins_pass_others_do_not() {
        let o = Origins::parse("https://app.example.com").unwrap();
        assert!(
            o.allows(&headers(&[("host", "md.example.com")])),
            "no Origin: not a browser"
        );
        assert!(o.allows(&headers(&[("origin", "https://APP.example.com")])));
        assert!(
            o.allows(&headers(&[
                ("origin", "http://127.0.0.1:8080"),
                ("host", "127.0.0.1:8080")
            ])),
            "the server's own page"
        );
        assert!(!o.allows(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "md.example.com")
        ])));
        assert!(!o.allows(&headers(&[("origin", "null")])));
        assert!(Origins::Any.allows(&headers(&[("origin", "https://evil.example")])));
    }
}
