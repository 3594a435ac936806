//! The `Host` names Berth answers to (its defence against DNS rebinding; the
//! middleware that applies it is in `middleware.rs`).

/// The `Host` values Berth answers to: the public URL's, the listen address
/// (and `localhost` forms when it listens on loopback), the dashboard's host
/// behind Traefik, and any IP literal when it listens on every address. A DNS
/// name that is none of these is a rebinding attempt or a misconfiguration.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    names: Vec<String>,
    any_ip_literal: bool,
}

impl AllowedHosts {
    pub fn new(config: &crate::config::ServerConfig, dashboard_host: Option<&str>) -> Self {
        let mut names = Vec::new();
        if let Some(a) = config.public_url.as_deref().and_then(authority) {
            names.push(a.to_ascii_lowercase());
        }
        let port = config.listen.port();
        let ip = config.listen.ip();
        if ip.is_loopback() {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                names.push(format!("{h}:{port}"));
            }
        }
        names.push(config.listen.to_string());
        if let Some(h) = dashboard_host {
            names.push(h.to_ascii_lowercase());
        }
        Self {
            names,
            any_ip_literal: ip.is_unspecified(),
        }
    }

    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        // A name with the default port elided (public URL or dashboard host).
        let bare = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
        if self
            .names
            .iter()
            .any(|n| n == bare || n.rsplit_once(':').map(|(h, _)| h) == Some(&host))
        {
            return true;
        }
        if self.any_ip_literal {
            let literal = bare.trim_start_matches('[').trim_end_matches(']');
            return literal.parse::<std::net::IpAddr>().is_ok();
        }
        false
    }
}

/// `scheme://host[:port]` → `host[:port]`.
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::{authority, AllowedHosts};

    #[test]
    fn hosts_are_the_configured_names_and_addresses_only() {
        let mut config = crate::config::ServerConfig {
            listen: "127.0.0.1:3000".parse().unwrap(),
            site_root: String::new(),
            public_url: Some("https://berth.example.com".into()),
            trust_proxy: false,
            body_limit: 1,
            max_requests: 64,
            max_queued: 1024,
            worker: false,
            release: None,
            metrics_token_hash: None,
        };
        let hosts = AllowedHosts::new(&config, Some("dash.example.com"));
        for ok in [
            "berth.example.com",
            "BERTH.example.com",
            "berth.example.com:443",
            "127.0.0.1:3000",
            "localhost:3000",
            "dash.example.com",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "127.0.0.1:3001",
            "10.0.0.5:3000",
            "",
            "rebind.attacker.test:3000",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
        config.listen = "0.0.0.0:3000".parse().unwrap();
        config.public_url = None;
        let hosts = AllowedHosts::new(&config, None);
        assert!(hosts.allows("10.0.0.5:3000") && hosts.allows("[2001:db8::1]:3000"));
        assert!(!hosts.allows("rebind.attacker.test:3000"));
    }

    #[test]
    fn authority_strips_scheme_and_path() {
        assert_eq!(authority("http://127.0.0.1:3000/projects?x=1"), Some("127.0.0.1:3000"));
        assert_eq!(authority("https://berth.example.com"), Some("berth.example.com"));
        assert_eq!(authority("null"), None);
    }
}
