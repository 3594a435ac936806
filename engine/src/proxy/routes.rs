//! The serializer from an application's domains to Traefik's dynamic
//! configuration: routers, services and middlewares as JSON values (JSON is
//! YAML), every name made from IDs and every user value already checked by
//! its grammar (`crate::apps::spec`, `crate::apps::domain_options`), so nothing here
//! quotes or escapes anything but the one regular expression it builds.

use crate::apps::domain_options::{CertSource, DomainOptions};
use serde_json::{json, Map, Value};

/// One host (and path) routed to an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The domain's ID: its routers and middlewares are named from it.
    pub id: uuid::Uuid,
    /// A DNS name, or `*.<name>` for a wildcard.
    pub host: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// The container port, when not the application's.
    pub port: Option<u16>,
    pub https: bool,
    pub cert: CertSource,
    /// The CA is not asked now (backoff after a failure, `crate::proxy::certs`):
    /// the router serves Traefik's default certificate until the retry.
    pub acme_paused: bool,
    pub options: DomainOptions,
}

/// What a route points at: the deployment and the container's address.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub deployment: uuid::Uuid,
    pub port: u16,
    /// The container's IP on its organization's network, when known. Traefik
    /// then connects without asking Docker's DNS, which is served by dockerd
    /// itself and answers late while dockerd is busy starting and stopping
    /// containers (a rollout): the main source of the rollout tail
    /// (docs/BENCHMARKS.md). A container that comes back with another address
    /// is routed again by the reconciler. Without it, the DNS alias.
    pub address: Option<String>,
}

/// The DNS name a deployment's container answers to on the Berth network. Traefik
/// resolves it through Docker's DNS, so a container that restarts with a new
/// address stays routed (container names can exceed a DNS label; this cannot).
pub fn upstream_host(deployment: uuid::Uuid) -> String {
    format!("d-{}", deployment.simple())
}

/// The name of everything made for one domain.
fn key(route: &Route) -> String {
    format!("d{}", route.id.simple())
}

/// `Host(...)` for the route's hosts (a wildcard as an anchored `HostRegexp`),
/// and its path prefix.
fn rule(route: &Route) -> String {
    let hosts: Vec<String> = match (route.host.strip_prefix("*."), route.options.www_pair(&route.host)) {
        (Some(base), _) => vec![format!("HostRegexp(`^[a-z0-9-]+\\.{}$`)", regex_escape(base))],
        (None, Some((from, to))) => vec![format!("Host(`{to}`)"), format!("Host(`{from}`)")],
        (None, None) => vec![format!("Host(`{}`)", route.host)],
    };
    let host = if hosts.len() == 1 {
        hosts[0].clone()
    } else {
        format!("({})", hosts.join(" || "))
    };
    if route.path_prefix == "/" {
        host
    } else {
        format!("{host} && PathPrefix(`{}`)", route.path_prefix)
    }
}

/// Traefik's priority for an exact host's routers: above every wildcard's.
const EXACT_HOST: usize = 1 << 20;

/// The priority of Berth's own dashboard: above every app's route.
pub const DASHBOARD_PRIORITY: usize = 1 << 30;

/// Traefik's priority for a route's routers. Unless told, Traefik orders
/// routers by the length of their rule, and a wildcard's `HostRegexp` is longer
/// than most `Host` rules: `*.example.com` would take `shop.example.com`'s
/// requests from the app (or the organization) that has that host. Exact hosts
/// come first, among themselves by their rule's length (a longer path prefix
/// of one host first, as before), then wildcards.
fn priority(route: &Route, rule: &str) -> usize {
    if route.host.starts_with("*.") {
        rule.len()
    } else {
        EXACT_HOST + rule.len()
    }
}

/// A DNS name in a regular expression: only its dots are special.
fn regex_escape(host: &str) -> String {
    host.replace('.', "\\.")
}

/// The middlewares in front of the app on one router, defined into `mws`.
/// `tls`: the router answers HTTPS (HSTS only there: browsers ignore it on HTTP).
fn serving_middlewares(app: &str, route: &Route, tls: bool, mws: &mut Map<String, Value>) -> Vec<Value> {
    let k = key(route);
    let o = &route.options;
    let mut chain = vec![Value::from(format!("{app}-id"))];
    let mut add = |name: String, def: Value, chain: &mut Vec<Value>| {
        mws.insert(name.clone(), def);
        chain.push(name.into());
    };
    if let Some(r) = o.rate_limit {
        add(
            format!("{k}-ratelimit"),
            json!({"rateLimit": {"average": r.average, "burst": r.burst}}),
            &mut chain,
        );
    }
    if let Some((from, to)) = o.www_pair(&route.host) {
        add(
            format!("{k}-www"),
            json!({"redirectRegex": {
                "regex": format!("^(https?)://{}(:[0-9]+)?(.*)$", regex_escape(&from)),
                "replacement": format!("${{1}}://{to}${{2}}${{3}}"),
                "permanent": true
            }}),
            &mut chain,
        );
    }
    if !o.basic_auth.is_empty() {
        let users: Vec<String> = o.basic_auth.iter().map(|u| format!("{}:{}", u.user, u.hash)).collect();
        add(
            format!("{k}-auth"),
            json!({"basicAuth": {"users": users, "removeHeader": true}}),
            &mut chain,
        );
    }
    let mut headers = Map::new();
    if !o.headers.is_empty() {
        let custom: Map<String, Value> = o
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::from(v.clone())))
            .collect();
        headers.insert("customResponseHeaders".into(), custom.into());
    }
    if let (true, Some(h)) = (tls, o.hsts) {
        headers.insert("stsSeconds".into(), h.max_age.into());
        headers.insert("stsIncludeSubdomains".into(), h.include_subdomains.into());
    }
    if !headers.is_empty() {
        let name = if tls {
            format!("{k}-headers-tls")
        } else {
            format!("{k}-headers")
        };
        add(name, json!({"headers": headers}), &mut chain);
    }
    if route.strip_prefix && route.path_prefix != "/" {
        add(
            format!("{k}-strip"),
            json!({"stripPrefix": {"prefixes": [route.path_prefix]}}),
            &mut chain,
        );
    }
    if o.compress {
        add(format!("{k}-compress"), json!({"compress": {}}), &mut chain);
    }
    chain
}

/// The `tls` section of an HTTPS router: the resolver to ask (unless the
/// certificate is uploaded or asking waits out a backoff) and, for wildcards
/// and www pairs, the names the certificate must cover.
fn tls_section(route: &Route) -> Value {
    let mut tls = Map::new();
    if let (Some(resolver), false) = (route.cert.resolver(), route.acme_paused) {
        tls.insert("certResolver".into(), resolver.into());
        if route.host.starts_with("*.") {
            tls.insert("domains".into(), json!([{"main": route.host}]));
        } else if let Some((from, to)) = route.options.www_pair(&route.host) {
            tls.insert("domains".into(), json!([{"main": to, "sans": [from]}]));
        }
    }
    tls.into()
}

/// The dynamic configuration for one application.
pub fn app_config(app: &str, routes: &[Route], up: &Upstream, token: &str) -> Value {
    let mut routers = Map::new();
    let mut services = Map::new();
    let mut middlewares = Map::new();
    middlewares.insert(
        format!("{app}-id"),
        json!({"headers": {"customResponseHeaders": {"X-Berth-Deployment": token}}}),
    );
    for d in routes {
        let port = d.port.unwrap_or(up.port);
        let service = format!("{app}-{port}");
        services.entry(service.clone()).or_insert_with(|| {
            let host = up.address.clone().unwrap_or_else(|| upstream_host(up.deployment));
            json!({"loadBalancer": {"servers": [{"url": format!("http://{host}:{port}")}], "passHostHeader": true}})
        });
        let k = key(d);
        let rule = rule(d);
        let priority = priority(d, &rule);
        if d.https {
            let mws = serving_middlewares(app, d, true, &mut middlewares);
            routers.insert(
                format!("{k}-tls"),
                json!({"rule": rule, "priority": priority, "entryPoints": ["websecure"], "service": service, "middlewares": mws, "tls": tls_section(d)}),
            );
        }
        if d.https && d.options.redirect_https {
            let redirect = format!("{k}-to-https");
            middlewares.insert(
                redirect.clone(),
                json!({"redirectScheme": {"scheme": "https", "permanent": true}}),
            );
            routers.insert(
                k,
                json!({"rule": rule, "priority": priority, "entryPoints": ["web"], "service": service, "middlewares": [redirect]}),
            );
        } else {
            let mws = serving_middlewares(app, d, false, &mut middlewares);
            routers.insert(
                k,
                json!({"rule": rule, "priority": priority, "entryPoints": ["web"], "service": service, "middlewares": mws}),
            );
        }
    }
    json!({"http": {"routers": routers, "services": services, "middlewares": middlewares}})
}

/// The route that serves Berth's own UI through Traefik; over HTTPS (with a
/// redirect from HTTP) when `resolver` names one. Its answers carry
/// [`super::DASHBOARD_ROUTE_HEADER`] = [`dashboard_token`] of the upstream, so an
/// upgrade sees when Traefik has moved the route to the new Berth.
pub fn dashboard_config(host: &str, upstream: &str, resolver: Option<&str>) -> Value {
    let rule = format!("Host(`{host}`)");
    let service = json!({"loadBalancer": {"servers": [{"url": upstream}], "passHostHeader": true}});
    let id = json!({"headers": {"customResponseHeaders": {"X-Berth-Route": dashboard_token(upstream)}}});
    match resolver {
        None => json!({"http": {
            "routers": {"berth-dashboard": {"rule": rule, "priority": DASHBOARD_PRIORITY, "entryPoints": ["web"], "service": "berth-dashboard",
                "middlewares": ["berth-dashboard-id"]}},
            "middlewares": {"berth-dashboard-id": id},
            "services": {"berth-dashboard": service}
        }}),
        Some(resolver) => json!({"http": {
            "routers": {
                "berth-dashboard-tls": {"rule": rule, "priority": DASHBOARD_PRIORITY, "entryPoints": ["websecure"], "service": "berth-dashboard",
                    "middlewares": ["berth-dashboard-id"], "tls": {"certResolver": resolver}},
                "berth-dashboard": {"rule": rule, "priority": DASHBOARD_PRIORITY, "entryPoints": ["web"], "service": "berth-dashboard",
                    "middlewares": ["berth-dashboard-to-https"]}
            },
            "middlewares": {
                "berth-dashboard-to-https": {"redirectScheme": {"scheme": "https", "permanent": true}},
                "berth-dashboard-id": id
            },
            "services": {"berth-dashboard": service}
        }}),
    }
}

/// Names the dashboard's upstream in its answers without saying what it is.
pub fn dashboard_token(upstream: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("berth-dashboard-route:{upstream}"))[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::domain_options::{BasicUser, Hsts, RateLimit, Www};

    #[test]
    fn the_dashboard_route_names_its_host_and_upstream() {
        let c = dashboard_config("berth.example.com", "http://172.17.0.1:3000", None);
        assert_eq!(
            c["http"]["routers"]["berth-dashboard"]["rule"],
            "Host(`berth.example.com`)"
        );
        assert_eq!(
            c["http"]["services"]["berth-dashboard"]["loadBalancer"]["servers"][0]["url"],
            "http://172.17.0.1:3000"
        );
        let c = dashboard_config("berth.example.com", "http://172.17.0.1:3000", Some("http01"));
        assert_eq!(
            c["http"]["routers"]["berth-dashboard-tls"]["tls"]["certResolver"],
            "http01"
        );
        assert_eq!(
            c["http"]["routers"]["berth-dashboard"]["middlewares"][0],
            "berth-dashboard-to-https"
        );
        assert_eq!(
            c["http"]["middlewares"]["berth-dashboard-id"]["headers"]["customResponseHeaders"]["X-Berth-Route"],
            dashboard_token("http://172.17.0.1:3000")
        );
        assert_ne!(dashboard_token("http://a:3000"), dashboard_token("http://b:3000"));
    }

    fn domain(n: u128, host: &str, prefix: &str, strip: bool, https: bool) -> Route {
        Route {
            id: uuid::Uuid::from_u128(n),
            host: host.into(),
            path_prefix: prefix.into(),
            strip_prefix: strip,
            port: None,
            https,
            cert: CertSource::Http,
            acme_paused: false,
            options: DomainOptions::default(),
        }
    }

    fn up(address: Option<&str>) -> Upstream {
        Upstream {
            deployment: uuid::Uuid::nil(),
            port: 8080,
            address: address.map(Into::into),
        }
    }

    #[test]
    fn routes_name_the_upstream_and_mark_the_deployment() {
        let c = app_config(
            "web",
            &[
                domain(1, "web.localhost", "/", false, false),
                domain(2, "example.com", "/api", true, true),
            ],
            &up(None),
            "0f1e2d3c4b5a69788796a5b4",
        );
        let http = &c["http"];
        let (k1, k2) = (
            format!("d{}", uuid::Uuid::from_u128(1).simple()),
            format!("d{}", uuid::Uuid::from_u128(2).simple()),
        );
        assert_eq!(http["routers"][&k1]["rule"], "Host(`web.localhost`)");
        let tls = &http["routers"][format!("{k2}-tls")];
        assert_eq!(tls["rule"], "Host(`example.com`) && PathPrefix(`/api`)");
        assert_eq!(tls["entryPoints"][0], "websecure");
        assert_eq!(tls["tls"]["certResolver"], "http01");
        assert_eq!(http["routers"][&k2]["middlewares"][0], format!("{k2}-to-https"));
        assert_eq!(
            http["middlewares"][format!("{k2}-to-https")]["redirectScheme"]["permanent"],
            true
        );
        assert_eq!(
            http["middlewares"][format!("{k2}-strip")]["stripPrefix"]["prefixes"][0],
            "/api"
        );
        assert_eq!(
            http["services"]["web-8080"]["loadBalancer"]["servers"][0]["url"],
            format!("http://d-{}:8080", uuid::Uuid::nil().simple())
        );
        assert_eq!(
            http["middlewares"]["web-id"]["headers"]["customResponseHeaders"]["X-Berth-Deployment"],
            "0f1e2d3c4b5a69788796a5b4",
            "the public header carries the opaque token, not the deployment id"
        );
        // With the container's address known, Traefik skips Docker's DNS.
        let c = app_config(
            "web",
            &[domain(1, "web.localhost", "/", false, false)],
            &up(Some("10.213.4.7")),
            "t",
        );
        assert_eq!(
            c["http"]["services"]["web-8080"]["loadBalancer"]["servers"][0]["url"],
            "http://10.213.4.7:8080"
        );
    }

    #[test]
    fn every_option_becomes_a_middleware_named_from_the_domain() {
        let mut d = domain(7, "example.com", "/", false, true);
        d.cert = CertSource::Tls;
        d.options = DomainOptions {
            redirect_https: false,
            hsts: Some(Hsts {
                max_age: 600,
                include_subdomains: true,
            }),
            www: Www::ToWww,
            basic_auth: vec![BasicUser {
                user: "alice".into(),
                hash: "$2y$10$abc".into(),
            }],
            headers: vec![("X-Frame-Options".into(), "DENY".into())],
            compress: true,
            rate_limit: Some(RateLimit { average: 10, burst: 20 }),
        };
        let c = app_config("web", &[d.clone()], &up(None), "t");
        let k = format!("d{}", d.id.simple());
        let m = &c["http"]["middlewares"];
        let tls = &c["http"]["routers"][format!("{k}-tls")];
        assert_eq!(tls["rule"], "(Host(`www.example.com`) || Host(`example.com`))");
        assert_eq!(tls["tls"]["certResolver"], "tlsalpn01");
        assert_eq!(
            tls["tls"]["domains"][0],
            json!({"main": "www.example.com", "sans": ["example.com"]})
        );
        let chain: Vec<&str> = tls["middlewares"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            chain,
            [
                "web-id",
                &format!("{k}-ratelimit"),
                &format!("{k}-www"),
                &format!("{k}-auth"),
                &format!("{k}-headers-tls"),
                &format!("{k}-compress")
            ]
        );
        assert_eq!(m[format!("{k}-auth")]["basicAuth"]["users"][0], "alice:$2y$10$abc");
        assert_eq!(m[format!("{k}-headers-tls")]["headers"]["stsSeconds"], 600);
        assert_eq!(
            m[format!("{k}-www")]["redirectRegex"]["regex"],
            "^(https?)://example\\.com(:[0-9]+)?(.*)$"
        );
        assert_eq!(
            m[format!("{k}-www")]["redirectRegex"]["replacement"],
            "${1}://www.example.com${2}${3}"
        );
        assert_eq!(
            m[format!("{k}-ratelimit")]["rateLimit"],
            json!({"average": 10, "burst": 20})
        );
        // No redirect: HTTP serves the app too, without HSTS.
        let plain = &c["http"]["routers"][&k];
        assert!(plain["middlewares"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == &json!(format!("{k}-headers"))));
        assert!(m[format!("{k}-headers")]["headers"].get("stsSeconds").is_none());
    }

    #[test]
    fn wildcards_ask_for_the_wildcard_name_and_paused_or_custom_ask_nothing() {
        let mut d = domain(9, "*.apps.example.com", "/", false, true);
        d.cert = CertSource::Dns;
        let c = app_config("web", &[d.clone()], &up(None), "t");
        let k = format!("d{}", d.id.simple());
        let tls = &c["http"]["routers"][format!("{k}-tls")];
        assert_eq!(tls["rule"], "HostRegexp(`^[a-z0-9-]+\\.apps\\.example\\.com$`)");
        assert_eq!(
            tls["tls"],
            json!({"certResolver": "dns01", "domains": [{"main": "*.apps.example.com"}]})
        );
        d.acme_paused = true;
        let c = app_config("web", &[d.clone()], &up(None), "t");
        assert_eq!(c["http"]["routers"][format!("{k}-tls")]["tls"], json!({}));
        d.acme_paused = false;
        d.cert = CertSource::Custom;
        let c = app_config("web", &[d], &up(None), "t");
        assert_eq!(c["http"]["routers"][format!("{k}-tls")]["tls"], json!({}));
    }

    #[test]
    fn an_exact_host_outranks_a_wildcard_over_it_and_the_dashboard_outranks_both() {
        let wild = domain(1, "*.example.com", "/", false, true);
        let exact = domain(2, "a.example.com", "/", false, true);
        let deeper = domain(3, "a.example.com", "/api", false, true);
        let of = |d: &Route| {
            let c = app_config("web", std::slice::from_ref(d), &up(None), "t");
            let r = &c["http"]["routers"][format!("d{}", d.id.simple())];
            (
                r["priority"].as_u64().unwrap(),
                r["rule"].as_str().unwrap().len() as u64,
            )
        };
        let (w, w_len) = of(&wild);
        let (e, e_len) = of(&exact);
        let (p, _) = of(&deeper);
        // By rule length alone (Traefik's default) the wildcard would win.
        assert!(w_len > e_len, "{w_len} {e_len}");
        assert!(e > w && p > e, "{w} {e} {p}");
        let c = dashboard_config("b.example.com", "http://berth:3000", Some("le"));
        for r in ["berth-dashboard", "berth-dashboard-tls"] {
            assert!(c["http"]["routers"][r]["priority"].as_u64().unwrap() > p);
        }
    }
}
