//! Where ingest may fetch images from over HTTP(S). A scan event names its image by URI, and
//! whoever can write a scan event must not be able to make ingest fetch (and store) what only
//! ingest can reach: triage's own API on loopback, a cloud metadata service on link-local, an
//! admin port on the hospital network. So:
//!
//! - with `--ingest-http-allow` set, a URL must start with one of its URL prefixes
//!   (`https://pacs.example/wado/`) or name one of its hosts (`pacs.example`, `pacs:8080`);
//! - whatever the allow-list, an address that is loopback, link-local, private (RFC 1918, ULA),
//!   CGNAT, unspecified, multicast or broadcast is refused, unless the URL matched an allow-list
//!   entry explicitly or the address lies in `--ingest-allow-networks`.
//!
//! The address check runs on the addresses the name resolves to (in the HTTP client's resolver,
//! so the connection goes only to a checked address: no window for DNS rebinding), on IP
//! literals, and again on every redirect. A refusal is poison: the study is dead-lettered with
//! `ingest.uri_not_allowed` or `ingest.address_forbidden`, never retried.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// Why a URL may not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not on the allow-list (--ingest-http-allow)")]
    NotAllowed,
    #[error("{host} resolves to {addr}, a loopback/link-local/private address (allow it with --ingest-allow-networks)")]
    ForbiddenAddress { host: String, addr: IpAddr },
    #[error("bucket/prefix not on the allow-list (--ingest-s3-allow)")]
    S3NotAllowed,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAllowed | Refusal::S3NotAllowed => "ingest.uri_not_allowed",
            Refusal::ForbiddenAddress { .. } => "ingest.address_forbidden",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    prefixes: Vec<String>,
    hosts: Vec<String>,
    networks: Vec<IpNet>,
}

/// Addresses no image source should have unless someone said so.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // fc00::/7, unique local
                || (s[0] & 0xffc0) == 0xfe80 // fe80::/10, link-local
        }
    }
}

impl EgressPolicy {
    /// `allow`: URL prefixes (with `://`) or host[:port] names; `networks`: CIDRs whose
    /// addresses may be fetched although internal.
    pub fn parse(allow: &[String], networks: &[String]) -> Result<Self, String> {
        let mut p = EgressPolicy::default();
        for a in allow.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            if a.contains("://") {
                let u = Url::parse(a).map_err(|e| format!("allow-list entry {a:?}: {e}"))?;
                // Compare normalised forms: the URL crate lower-cases the host.
                p.prefixes.push(u.to_string());
            } else {
                p.hosts.push(a.to_ascii_lowercase());
            }
        }
        for n in networks.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let net = n
                .parse::<IpNet>()
                .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                .map_err(|e| format!("network {n:?}: {e}"))?;
            p.networks.push(net);
        }
        Ok(p)
    }

    /// Whether `host` is named by an allow-list entry (host entries with a port count too:
    /// the resolver does not know the port).
    fn host_listed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|h| {
            let name = h.rsplit_once(':').map_or(h.as_str(), |(n, _)| n);
            *h == host || name == host
        }) || self.prefixes.iter().any(|p| {
            Url::parse(p)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.eq_ignore_ascii_case(&host)))
                .unwrap_or(false)
        })
    }

    /// Whether the URL matched an allow-list entry explicitly (`Ok(true)`), is allowed because
    /// there is no allow-list (`Ok(false)`), or is refused.
    fn listed(&self, url: &Url) -> Result<bool, Refusal> {
        if self.prefixes.is_empty() && self.hosts.is_empty() {
            return Ok(false);
        }
        let s = url.as_str();
        let by_prefix = self.prefixes.iter().any(|p| s.starts_with(p.as_str()));
        let by_host = url.host_str().is_some_and(|h| {
            self.hosts.iter().any(|e| {
                e.eq_ignore_ascii_case(h)
                    || url
                        .port_or_known_default()
                        .is_some_and(|p| e.eq_ignore_ascii_case(&format!("{h}:{p}")))
            })
        });
        if by_prefix || by_host {
            Ok(true)
        } else {
            Err(Refusal::NotAllowed)
        }
    }

    fn address_ok(&self, ip: IpAddr, listed: bool) -> bool {
        listed || !is_internal(ip) || self.networks.iter().any(|n| n.contains(&ip))
    }

    /// The checks that need no resolution: the allow-list and an IP-literal host. Names are
    /// checked by [`GuardedResolver`] when the client connects.
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let listed = self.listed(url)?;
        let literal = match url.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.address_ok(ip, listed) => Err(Refusal::ForbiddenAddress {
                host: ip.to_string(),
                addr: ip,
            }),
            _ => Ok(()),
        }
    }
}

/// The HTTP client's resolver: resolves with the system resolver and keeps only addresses the
/// policy allows for that name; none left is a [`Refusal`] (found again in the error chain).
pub struct GuardedResolver(pub Arc<EgressPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let listed = policy.host_listed(&host);
            let ok: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.address_ok(a.ip(), listed))
                .collect();
            match (ok.is_empty(), found.first()) {
                (true, Some(first)) => Err(Box::new(Refusal::ForbiddenAddress {
                    host,
                    addr: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(ok.into_iter()) as Addrs),
            }
        })
    }
}

/// A refusal anywhere in an error's chain (the resolver's or the redirect policy's).
pub fn refusal_in(e: &(dyn std::error::Error + 'static)) -> Option<Refusal> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

/// Which S3 objects a scan event may name. The endpoint and credentials are the operator's
/// (`--ingest-s3-option`), so an event cannot reach another server through `s3://`; what it can
/// choose is the bucket and key, and with `--ingest-s3-allow` only listed buckets (or
/// `bucket/prefix/`es) are read. Empty: any bucket the credentials can read.
#[derive(Debug, Clone, Default)]
pub struct S3Allow {
    entries: Vec<(String, String)>,
}

impl S3Allow {
    /// Entries `bucket` or `bucket/prefix` (an `s3://` in front is accepted).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = S3Allow::default();
        for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bare = e.strip_prefix("s3://").unwrap_or(e);
            let (bucket, prefix) = bare.split_once('/').unwrap_or((bare, ""));
            if bucket.is_empty() || bucket.contains(|c: char| c.is_whitespace()) {
                return Err(format!("S3 allow-list entry {e:?}: no bucket"));
            }
            out.entries.push((bucket.to_string(), prefix.to_string()));
        }
        Ok(out)
    }

    /// Also allows `bucket/prefix` (ingest's own blob store, which the gateway may share).
    pub fn with(mut self, bucket: &str, prefix: &str) -> Self {
        if !self.entries.is_empty() {
            self.entries
                .push((bucket.to_string(), prefix.trim_matches('/').to_string()));
        }
        self
    }

    pub fn check(&self, bucket: &str, key: &str) -> Result<(), Refusal> {
        if self.entries.is_empty()
            || self
                .entries
                .iter()
                .any(|(b, p)| b == bucket && (p.is_empty() || key.starts_with(p.as_str())))
        {
            Ok(())
        } else {
            Err(Refusal::S3NotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn without_an_allow_list_public_literals_pass_and_internal_ones_do_not() {
        let p = EgressPolicy::parse(&[], &[]).unwrap();
        assert_eq!(p.check_url(&url("https://93.184.216.34/x.png")), Ok(()));
        assert_eq!(p.check_url(&url("https://pacs.example/x.png")), Ok(()));
        for u in [
            "http://127.0.0.1:8083/worklist",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/x",
        ] {
            let r = p.check_url(&url(u)).unwrap_err();
            assert_eq!(r.reason(), "ingest.address_forbidden", "{u}");
        }
    }

    #[test]
    fn the_allow_list_decides_and_its_entries_may_be_internal() {
        let p = EgressPolicy::parse(
            &[
                "https://pacs.example/wado/".into(),
                "images.example:8443".into(),
                "http://127.0.0.1:9999/".into(),
            ],
            &["10.20.0.0/16".into()],
        )
        .unwrap();
        assert_eq!(
            p.check_url(&url("https://pacs.example/wado/studies/1")),
            Ok(())
        );
        assert_eq!(p.check_url(&url("https://PACS.example/wado/x")), Ok(()));
        assert_eq!(
            p.check_url(&url("https://pacs.example/other/x")),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(p.check_url(&url("https://images.example:8443/a")), Ok(()));
        assert_eq!(
            p.check_url(&url("https://images.example/a")),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            p.check_url(&url("http://127.0.0.1:9999/x.png")),
            Ok(()),
            "listed explicitly"
        );
        assert_eq!(
            p.check_url(&url("http://127.0.0.1:8083/worklist")),
            Err(Refusal::NotAllowed)
        );
        assert!(p.host_listed("pacs.example"));
        assert!(p.host_listed("images.example"));
        assert!(!p.host_listed("evil.example"));
        assert!(p.address_ok("10.20.3.4".parse().unwrap(), false));
        assert!(!p.address_ok("10.21.3.4".parse().unwrap(), false));
        assert!(EgressPolicy::parse(&[], &["not-a-net".into()]).is_err());
        assert!(EgressPolicy::parse(&["http://[bad".into()], &[]).is_err());
    }

    #[test]
    fn s3_objects_are_read_only_from_listed_buckets_and_prefixes() {
        let open = S3Allow::parse(&[]).unwrap().with("blobs", "cxr");
        assert_eq!(open.check("anything", "x"), Ok(()), "no list: any bucket");
        let list = S3Allow::parse(&["s3://scans/site-a/".into(), "archive".into()])
            .unwrap()
            .with("blobs", "/cxr/");
        assert_eq!(list.check("scans", "site-a/2024/1.dcm"), Ok(()));
        assert_eq!(
            list.check("scans", "site-b/2024/1.dcm"),
            Err(Refusal::S3NotAllowed)
        );
        assert_eq!(list.check("archive", "any/key"), Ok(()));
        assert_eq!(list.check("blobs", "cxr/sha256/ab/abc"), Ok(()));
        assert_eq!(list.check("blobs", "other/key"), Err(Refusal::S3NotAllowed));
        assert_eq!(list.check("secrets", "key"), Err(Refusal::S3NotAllowed));
        assert_eq!(Refusal::S3NotAllowed.reason(), "ingest.uri_not_allowed");
        assert!(S3Allow::parse(&["/prefix".into()]).is_err());
    }
}
