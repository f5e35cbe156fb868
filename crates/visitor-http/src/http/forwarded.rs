//! Requests that came through proxies (contract §11): who the client is, and which URL it
//! addressed. `X-Forwarded-For`, `X-Forwarded-Host` and `X-Forwarded-Proto` are believed only
//! from a peer in `--trusted-proxies`; anyone else could write them.

use std::net::IpAddr;

use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::HttpRequest;
use ipnet::IpNet;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The proxies whose forwarding headers are believed: addresses and CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `--trusted-proxies` entries: each an address (`10.0.0.7`, `::1`) or a range
    /// (`10.0.0.0/8`, `fd00::/8`); empty entries are skipped.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for entry in entries.into_iter().map(str::trim).filter(|e| !e.is_empty()) {
            let range = match entry.parse::<IpNet>() {
                Ok(range) => range.trunc(),
                Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
                    format!("--trusted-proxies: {entry:?} is neither an address nor a CIDR range")
                })?,
            };
            ranges.push(range);
        }
        Ok(Self(ranges))
    }

    /// True when `address` is one of the proxies.
    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.0.iter().any(|range| range.contains(&address))
    }

    /// The client's address: the peer, unless the peer is trusted; then the rightmost
    /// `X-Forwarded-For` entry that is not trusted, or the leftmost when all are. An entry that
    /// is not an address ends the walk at the hop that handed it over, which is trusted: the
    /// address before it is as far as anyone can vouch for.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let listed: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut closest = peer;
        for entry in listed.iter().rev() {
            let Some(address) = parse_hop(entry) else {
                return closest;
            };
            if !self.trusts(address) {
                return address;
            }
            closest = address;
        }
        closest
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.9:4711`,
/// `[2001:db8::1]:4711`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(address) = entry.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse::<IpAddr>().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<IpAddr>().ok().map(|a| a.to_canonical())
}

/// The client address of a request, as the request middleware found it for every layer after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// Where the service's own URLs point: `--public-url` when set; otherwise the request's `Host`
/// (and scheme), or a trusted proxy's `X-Forwarded-Host` / `X-Forwarded-Proto`.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The public base URL without a trailing `/`.
    public_url: Option<String>,
    proxies: TrustedProxies,
}

impl Origin {
    pub fn new(public_url: Option<&str>, proxies: TrustedProxies) -> Self {
        Self {
            public_url: public_url
                .map(|url| url.trim().trim_end_matches('/').to_owned())
                .filter(|url| !url.is_empty()),
            proxies,
        }
    }

    /// The proxies this origin believes.
    pub fn proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// The full URL of `path` (which starts with `/`) as a client of this request reaches it.
    pub fn url(&self, req: &HttpRequest, path: &str) -> String {
        if let Some(base) = &self.public_url {
            return format!("{base}{path}");
        }
        let trusted = req
            .peer_addr()
            .is_some_and(|peer| self.proxies.trusts(peer.ip()));
        let forwarded = |name: &HeaderName| {
            trusted
                .then(|| req.headers().get(name)?.to_str().ok())
                .flatten()
                .and_then(|value| value.split(',').next())
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        let scheme = forwarded(&X_FORWARDED_PROTO)
            .filter(|scheme| {
                scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")
            })
            // The connection's own scheme (actix's `connection_info` would believe anyone's
            // X-Forwarded-Proto).
            .unwrap_or(if req.app_config().secure() {
                "https"
            } else {
                "http"
            })
            .to_ascii_lowercase();
        let host = forwarded(&X_FORWARDED_HOST)
            .map(str::to_owned)
            .unwrap_or_else(|| own_host(req));
        format!("{scheme}://{host}{path}")
    }

    /// `Location` for `path`: under `--public-url` when set, else the path alone (§2).
    pub fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        }
    }
}

/// The request's own `Host` (or the authority of its target), never a forwarded one.
fn own_host(req: &HttpRequest) -> String {
    req.headers()
        .get(actix_web::http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;
    use actix_web::test::TestRequest;

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list.split(',')).unwrap()
    }

    fn forwarded_for(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                X_FORWARDED_FOR.clone(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn entries_are_addresses_or_ranges() {
        let list = proxies("10.0.0.0/8, 192.168.1.7,fd00::/8,,::1");
        assert!(list.trusts(ip("10.200.3.4")));
        assert!(list.trusts(ip("192.168.1.7")));
        assert!(!list.trusts(ip("192.168.1.8")));
        assert!(list.trusts(ip("fd12::5")));
        assert!(list.trusts(ip("::1")));
        assert!(
            list.trusts(ip("::ffff:10.1.2.3")),
            "an IPv4-mapped peer is its IPv4 address"
        );
        assert!(!list.trusts(ip("11.0.0.1")));
        assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(["proxy.internal"]).is_err());
        assert!(!TrustedProxies::default().trusts(ip("127.0.0.1")));
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let list = proxies("10.0.0.1");
        let headers = forwarded_for(&["1.1.1.1"]);
        assert_eq!(
            list.client_address(ip("203.0.113.5"), &headers),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_rightmost_untrusted_hop() {
        let list = proxies("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        // The client may forge entries on the left; the proxies append on the right.
        let headers = forwarded_for(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(list.client_address(peer, &headers), ip("203.0.113.9"));
        let headers = forwarded_for(&["10.1.1.1, 10.2.2.2"]);
        assert_eq!(
            list.client_address(peer, &headers),
            ip("10.1.1.1"),
            "all trusted: leftmost"
        );
        assert_eq!(
            list.client_address(peer, &HeaderMap::new()),
            peer,
            "no header: the peer"
        );
        let headers = forwarded_for(&["203.0.113.9:4711"]);
        assert_eq!(list.client_address(peer, &headers), ip("203.0.113.9"));
        let headers = forwarded_for(&["[2001:db8::1]:4711"]);
        assert_eq!(list.client_address(peer, &headers), ip("2001:db8::1"));
        let headers = forwarded_for(&["203.0.113.9, garbage, 10.3.3.3"]);
        assert_eq!(
            list.client_address(peer, &headers),
            ip("10.3.3.3"),
            "a hop that is no address stops the walk at the trusted hop that handed it over"
        );
    }

    #[test]
    fn urls_come_from_the_public_url_or_the_host_and_forwarded_ones_only_from_proxies() {
        let trusted = "10.0.0.1:5000".parse().unwrap();
        let stranger = "203.0.113.5:5000".parse().unwrap();
        let forged = |peer| {
            TestRequest::get()
                .peer_addr(peer)
                .insert_header(("host", "internal:8080"))
                .insert_header(("x-forwarded-host", "evil.example"))
                .insert_header(("x-forwarded-proto", "https"))
                .to_http_request()
        };
        let origin = Origin::new(None, proxies("10.0.0.1"));
        assert_eq!(
            origin.url(&forged(stranger), "/a"),
            "http://internal:8080/a"
        );
        assert_eq!(origin.url(&forged(trusted), "/a"), "https://evil.example/a");
        assert_eq!(origin.location("/a/1"), "/a/1");
        let public = Origin::new(Some("https://visitors.example.com/"), proxies("10.0.0.1"));
        assert_eq!(
            public.url(&forged(trusted), "/a"),
            "https://visitors.example.com/a"
        );
        assert_eq!(public.location("/a/1"), "https://visitors.example.com/a/1");
    }
}
