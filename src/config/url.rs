//! The URLs etcd accepts in its `*-urls` flags and `--initial-cluster`.
//!
//! etcd runs Go's `url.Parse` and then `types.NewURLs`: the scheme must be http, https, unix or
//! unixs; http(s) URLs must be `host:port` with no path. The error texts below are etcd's
//! (checked against etcd 3.4.23: `URL scheme must be http, https, unix, or unixs: foo://…`,
//! `URL address does not have the form "host:port": http://127.0.0.1`,
//! `URL must not contain a path: http://127.0.0.1:2379/path`).

use std::fmt;

use super::goparse::go_quote;

/// The schemes etcd accepts for listen and advertise URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UrlScheme {
    Http,
    Https,
    /// A Unix domain socket; the socket path is the URL's `host[:port]` text.
    Unix,
    /// A Unix domain socket with TLS.
    Unixs,
}

impl UrlScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
            UrlScheme::Unix => "unix",
            UrlScheme::Unixs => "unixs",
        }
    }

    /// https and unixs carry TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, UrlScheme::Https | UrlScheme::Unixs)
    }

    pub fn is_unix(self) -> bool {
        matches!(self, UrlScheme::Unix | UrlScheme::Unixs)
    }
}

/// A parsed listen/advertise URL.
///
/// Invariant: for http and https `port` is `Some`; `host` never carries IPv6 brackets (they are
/// added back by `Display` and [`Url::address`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    pub scheme: UrlScheme,
    /// Host name or IP literal; may be empty (`http://:2379` parses; binding rejects it).
    pub host: String,
    pub port: Option<u16>,
}

impl Url {
    /// Parses one URL the way `types.NewURLs` does for a single element (surrounding spaces
    /// trimmed). The error is etcd's message.
    pub fn parse(input: &str) -> Result<Url, String> {
        let input = input.trim();
        let parsed = go_url_parse(input).map_err(|reason| format!("parse {}: {reason}", go_quote(input)))?;
        let scheme = match parsed.scheme.as_str() {
            "http" => UrlScheme::Http,
            "https" => UrlScheme::Https,
            "unix" => UrlScheme::Unix,
            "unixs" => UrlScheme::Unixs,
            _ => return Err(format!("URL scheme must be http, https, unix, or unixs: {input}")),
        };
        let host_port_error = || format!("URL address does not have the form \"host:port\": {input}");
        if parsed.opaque {
            // "http:foo" has no authority at all.
            return Err(host_port_error());
        }
        let (host, port_text) = split_authority(&parsed.authority);
        let port = match port_text {
            Some(text) if !text.is_empty() => Some(text.parse::<u16>().map_err(|_| host_port_error())?),
            _ => None,
        };
        if scheme.is_unix() {
            // braid deviation: etcd accepts unix:///path but then listens on the empty host;
            // refusing here gives the user the reason up front.
            if !parsed.path.is_empty() || parsed.authority.is_empty() {
                return Err(format!("URL must not contain a path: {input}"));
            }
            // Unix socket names need not be host:port; keep the whole authority as the host
            // unless it really ends in a numeric port.
            if port.is_none() {
                return Ok(Url {
                    scheme,
                    host: parsed.authority.clone(),
                    port: None,
                });
            }
            return Ok(Url { scheme, host, port });
        }
        if port.is_none() || (host.contains(':') && !parsed.authority.starts_with('[')) {
            return Err(host_port_error());
        }
        if !parsed.path.is_empty() {
            return Err(format!("URL must not contain a path: {input}"));
        }
        Ok(Url { scheme, host, port })
    }

    /// The `host:port` (or socket name) to bind or dial, as Go's `url.URL.Host`.
    pub fn address(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}://{}", self.scheme.as_str(), self.address())
    }
}

/// Parses a comma-separated URL list as etcd's `UniqueURLs` flag value does: every element must
/// parse, the result is sorted by its text and duplicates are dropped.
pub fn parse_url_list(text: &str) -> Result<Vec<Url>, String> {
    let mut urls = Vec::new();
    for element in text.split(',') {
        urls.push(Url::parse(element)?);
    }
    sort_and_dedup(&mut urls);
    Ok(urls)
}

pub(crate) fn sort_and_dedup(urls: &mut Vec<Url>) {
    urls.sort_by_key(|url| url.to_string());
    urls.dedup();
}

pub(crate) fn join_urls(urls: &[Url]) -> String {
    urls.iter().map(Url::to_string).collect::<Vec<_>>().join(",")
}

/// What Go's `url.Parse` extracts, reduced to what etcd looks at.
struct GoUrl {
    scheme: String,
    opaque: bool,
    authority: String,
    path: String,
}

/// The subset of Go's `url.Parse` that decides which strings etcd accepts. The error is the
/// reason part of Go's `parse "<url>": <reason>`.
fn go_url_parse(input: &str) -> Result<GoUrl, String> {
    if input
        .chars()
        .any(|character| (character as u32) < 0x20 || character == '\u{7f}')
    {
        return Err("net/url: invalid control character in URL".to_string());
    }
    let without_fragment = input.split('#').next().unwrap_or_default();
    let (scheme, rest) = split_scheme(without_fragment)?;
    let rest = rest.split('?').next().unwrap_or_default();
    if !scheme.is_empty() && !rest.starts_with('/') {
        return Ok(GoUrl {
            scheme,
            opaque: true,
            authority: String::new(),
            path: rest.to_string(),
        });
    }
    if scheme.is_empty() {
        let first_segment = rest.split('/').next().unwrap_or_default();
        if first_segment.contains(':') {
            return Err("first path segment in URL cannot contain colon".to_string());
        }
    }
    let Some(after_slashes) = rest.strip_prefix("//") else {
        return Ok(GoUrl {
            scheme,
            opaque: false,
            authority: String::new(),
            path: rest.to_string(),
        });
    };
    let authority_end = after_slashes.find('/').unwrap_or(after_slashes.len());
    let authority_with_user = &after_slashes[..authority_end];
    let path = &after_slashes[authority_end..];
    // Userinfo ("user:pw@") is accepted by Go and irrelevant to etcd; drop it.
    let authority = match authority_with_user.rfind('@') {
        Some(at) => &authority_with_user[at + 1..],
        None => authority_with_user,
    };
    check_go_host(authority)?;
    Ok(GoUrl {
        scheme,
        opaque: false,
        authority: authority.to_string(),
        path: path.to_string(),
    })
}

/// Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(String, &str), String> {
    for (index, character) in raw.char_indices() {
        match character {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if index > 0 => {}
            ':' if index == 0 => return Err("missing protocol scheme".to_string()),
            ':' => return Ok((raw[..index].to_ascii_lowercase(), &raw[index + 1..])),
            _ => return Ok((String::new(), raw)),
        }
    }
    Ok((String::new(), raw))
}

/// Go's `parseHost` checks on brackets, ports and spaces.
fn check_go_host(authority: &str) -> Result<(), String> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("missing ']' in host".to_string());
        };
        let after = &authority[close + 1..];
        if !after.is_empty() && !is_valid_optional_port(after) {
            return Err(format!("invalid port {} after host", go_quote(after)));
        }
        return Ok(());
    }
    if let Some(colon) = authority.rfind(':') {
        let port = &authority[colon..];
        if !is_valid_optional_port(port) {
            return Err(format!("invalid port {} after host", go_quote(port)));
        }
    }
    if let Some(bad) = authority
        .chars()
        .find(|character| *character == ' ' || *character == '"')
    {
        return Err(format!("invalid character {} in host name", go_quote(&bad.to_string())));
    }
    Ok(())
}

fn is_valid_optional_port(port: &str) -> bool {
    match port.strip_prefix(':') {
        Some(digits) => digits.bytes().all(|byte| byte.is_ascii_digit()),
        None => port.is_empty(),
    }
}

/// Splits Go's `url.Host` into host and port text, removing IPv6 brackets.
fn split_authority(authority: &str) -> (String, Option<&str>) {
    if let Some(inner) = authority.strip_prefix('[') {
        if let Some(close) = inner.find(']') {
            let host = inner[..close].to_string();
            let after = &inner[close + 1..];
            return (host, after.strip_prefix(':'));
        }
    }
    match authority.rfind(':') {
        Some(colon) => (authority[..colon].to_string(), Some(&authority[colon + 1..])),
        None => (authority.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: UrlScheme, host: &str, port: Option<u16>) -> Url {
        Url {
            scheme,
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn accepts_the_four_schemes() {
        assert_eq!(
            Url::parse("http://localhost:2379"),
            Ok(url(UrlScheme::Http, "localhost", Some(2379)))
        );
        assert_eq!(
            Url::parse(" https://10.0.0.1:2380 "),
            Ok(url(UrlScheme::Https, "10.0.0.1", Some(2380)))
        );
        assert_eq!(
            Url::parse("HTTP://[::1]:2379"),
            Ok(url(UrlScheme::Http, "::1", Some(2379)))
        );
        assert_eq!(
            Url::parse("unix://localhost:2379"),
            Ok(url(UrlScheme::Unix, "localhost", Some(2379)))
        );
        assert_eq!(
            Url::parse("unixs://node.sock"),
            Ok(url(UrlScheme::Unixs, "node.sock", None))
        );
        assert_eq!(Url::parse("http://:2379"), Ok(url(UrlScheme::Http, "", Some(2379))));
        assert_eq!(
            Url::parse("http://user@1.2.3.4:80"),
            Ok(url(UrlScheme::Http, "1.2.3.4", Some(80)))
        );
    }

    #[test]
    fn display_and_address_round_trip() {
        for text in [
            "http://localhost:2379",
            "https://[::1]:2380",
            "unix://localhost:2379",
            "unixs://node.sock",
        ] {
            let parsed = Url::parse(text).unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(Url::parse(&parsed.to_string()), Ok(parsed));
        }
        assert_eq!(Url::parse("https://[::1]:2380").unwrap().address(), "[::1]:2380");
        assert_eq!(Url::parse("unix://localhost:2379").unwrap().address(), "localhost:2379");
    }

    // Texts compared with etcd 3.4.23 (`etcd --listen-client-urls=...`).
    #[test]
    fn rejects_like_etcd() {
        assert_eq!(
            Url::parse("foo://127.0.0.1:2379"),
            Err("URL scheme must be http, https, unix, or unixs: foo://127.0.0.1:2379".to_string())
        );
        assert_eq!(
            Url::parse("http://127.0.0.1"),
            Err("URL address does not have the form \"host:port\": http://127.0.0.1".to_string())
        );
        assert_eq!(
            Url::parse("http://127.0.0.1:2379/path"),
            Err("URL must not contain a path: http://127.0.0.1:2379/path".to_string())
        );
        assert_eq!(
            Url::parse(""),
            Err("URL scheme must be http, https, unix, or unixs: ".to_string())
        );
        assert_eq!(
            Url::parse("localhost:2379"),
            Err("URL scheme must be http, https, unix, or unixs: localhost:2379".to_string())
        );
        assert_eq!(
            Url::parse("127.0.0.1:2379"),
            Err("parse \"127.0.0.1:2379\": first path segment in URL cannot contain colon".to_string())
        );
        assert_eq!(
            Url::parse("://x"),
            Err("parse \"://x\": missing protocol scheme".to_string())
        );
        assert_eq!(
            Url::parse("http://1.2.3.4:abc"),
            Err("parse \"http://1.2.3.4:abc\": invalid port \":abc\" after host".to_string())
        );
        assert_eq!(
            Url::parse("http://[::1:2379"),
            Err("parse \"http://[::1:2379\": missing ']' in host".to_string())
        );
        assert_eq!(
            Url::parse("http://::1:2379"),
            Err("URL address does not have the form \"host:port\": http://::1:2379".to_string())
        );
        assert!(Url::parse("http://1.2.3.4:99999").is_err());
        assert!(Url::parse("unix:///tmp/socket").is_err());
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        let urls = parse_url_list("http://b:1,http://a:1,http://b:1").unwrap();
        assert_eq!(join_urls(&urls), "http://a:1,http://b:1");
        assert!(parse_url_list("http://a:1,").is_err());
    }
}
