//! Whose request is this? The TCP peer, or — when the peer is one of the
//! `--trusted-proxies` (nginx, a load balancer) — the client it forwarded
//! for, from `X-Forwarded-For`. Per-address limits and log lines use this
//! address. `X-Forwarded-For` from anyone else is ignored: a client could
//! write whatever it likes there.
//!
//! The header lists addresses left to right as proxies appended them; the
//! client is the rightmost one that is not itself a trusted proxy (anything
//! left of it was written by someone we cannot vouch for).

use hyper::header::HeaderMap;
use std::net::IpAddr;

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and networks
    /// (`127.0.0.1,10.0.0.0/8,::1`); empty: none.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let mut list = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, bits) = item.split_once('/').unwrap_or((item, ""));
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{item}` is not an address or a network (10.0.0.0/8)"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                max
            } else {
                bits.parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("`{item}`: a prefix length is 0 to {max}"))?
            };
            list.push((addr, bits));
        }
        Ok(TrustedProxies(list))
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| within(ip, *net, *bits))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy
    /// that says whom it forwards for.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut forwarded: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            for item in value.split(',').map(str::trim) {
                match item.parse() {
                    Ok(ip) => forwarded.push(ip),
                    // One entry we cannot read: trust none left of it.
                    Err(_) => forwarded.clear(),
                }
            }
        }
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusts(*ip))
            .unwrap_or(peer)
    }
}

fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - bits as u32).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - bits as u32).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V4(_)) => ip
            .to_ipv4_mapped()
            .is_some_and(|v4| within(IpAddr::V4(v4), net, bits)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn lists_parse_and_bad_ones_are_named() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8,::1,fd00::/8").unwrap();
        assert!(t.trusts(ip("10.1.2.3")) && t.trusts(ip("127.0.0.1")) && t.trusts(ip("fd12::1")));
        assert!(!t.trusts(ip("11.0.0.1")) && !t.trusts(ip("127.0.0.2")));
        assert!(t.trusts(ip("::ffff:10.0.0.9")), "v4 in v6");
        assert_eq!(
            TrustedProxies::parse("").unwrap(),
            TrustedProxies::default()
        );
        assert!(TrustedProxies::parse("0.0.0.0/0")
            .unwrap()
            .trusts(ip("8.8.8.8")));
        for bad in ["nope", "10.0.0.0/33", "::1/129", "1.2.3.4/x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address_from_a_trusted_peer() {
        let t = TrustedProxies::parse("127.0.0.1,10.0.0.0/8").unwrap();
        let proxy = ip("127.0.0.1");
        assert_eq!(t.client(proxy, &xff(&["203.0.113.7"])), ip("203.0.113.7"));
        // A client that wrote its own header: only what our proxies appended counts.
        assert_eq!(
            t.client(proxy, &xff(&["1.1.1.1, 203.0.113.7, 10.0.0.5"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client(proxy, &xff(&["1.1.1.1", "203.0.113.7"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client(proxy, &xff(&["1.1.1.1, garbage, 203.0.113.7"])),
            ip("203.0.113.7")
        );
        assert_eq!(t.client(proxy, &xff(&["203.0.113.7, garbage"])), proxy);
        assert_eq!(t.client(proxy, &HeaderMap::new()), proxy);
        // Anyone else's header is ignored.
        let stranger = ip("198.51.100.9");
        assert_eq!(t.client(stranger, &xff(&["203.0.113.7"])), stranger);
    }
}
