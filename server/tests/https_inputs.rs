//! Hostile input to the HTTPS forms through the real router: hosts that would
//! break out of a Traefik rule or pass for another name, PEM with junk, a
//! 5 MB upload, a key of another certificate, option values outside their
//! grammar, a CA on a private address. Each is a 422 naming its field, and
//! nothing changes.

mod common;

use axum::http::StatusCode;
use common::matrix::{fixture, snapshot, Fixture};
use common::TestApp;

#[tokio::test]
async fn hostile_https_inputs_are_422_naming_the_field_and_change_nothing() {
    let app = TestApp::new().await;
    let Fixture { ada, ids, .. } = fixture(&app).await;
    let before = snapshot(&app, &ada, &ids).await;
    let instance_before = app.call("instance/get", &[], Some(&ada)).await.body;

    let expect = |r: common::Reply, field: &str, what: &str| {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {}", r.body);
        assert_eq!(r.json()["Field"]["field"], field, "{what}: {}", r.body);
    };

    for host in [
        "a`b.example.com",
        "shop.example.com`) || Host(`evil.com",
        "a.example.com || evil.com",
        "a b.example.com",
        // Full-width capitals and a Cyrillic "а": look-alikes of ASCII names.
        "\u{FF33}HOP.example.com",
        "\u{0430}pp.example.com",
        "*.*.example.com",
    ] {
        let r = app
            .call(
                "apps/add_domain",
                &[
                    ("id", &ids.app),
                    ("host", host),
                    ("path_prefix", "/"),
                    ("port", ""),
                    ("https", "on"),
                ],
                Some(&ada),
            )
            .await;
        expect(r, "host", host);
    }
    // A wildcard needs DNS-01 (and this instance has no DNS provider).
    for (cert, what) in [
        ("http", "a wildcard over HTTP-01"),
        ("dns", "DNS-01 without a provider"),
    ] {
        let r = app
            .call(
                "apps/add_domain",
                &[
                    ("id", &ids.app),
                    ("host", "*.example.com"),
                    ("path_prefix", "/"),
                    ("port", ""),
                    ("https", "on"),
                    ("cert", cert),
                ],
                Some(&ada),
            )
            .await;
        expect(r, "cert", what);
    }

    let update = |extra: &[(&'static str, &'static str)]| {
        let mut f: Vec<(&str, &str)> = vec![("id", ids.domain.as_str()), ("https", "on")];
        if !extra.iter().any(|(k, _)| *k == "cert") {
            f.push(("cert", "http"));
        }
        f.extend_from_slice(extra);
        f
    };
    for (field, extra) in [
        ("headers", update(&[("headers", "X-A: b\u{7}c")])),
        ("headers", update(&[("headers", "X-Berth-Deployment: forged")])),
        ("headers", update(&[("headers", "Bad Name: x")])),
        ("www", update(&[("www", "to_www`")])),
        ("basic_auth", update(&[("basic_auth", "a b:c")])),
        ("basic_auth", update(&[("basic_auth", "nobody")])),
        ("hsts_max_age", update(&[("hsts_max_age", "1e9")])),
        ("rate_average", update(&[("rate_burst", "10")])),
        ("cert", update(&[("cert", "letsencrypt")])),
        // A field given twice (no function takes a list).
        ("www", update(&[("www", "to_www"), ("www", "to_apex")])),
    ] {
        let r = app.call("apps/update_domain", &field_pairs(&extra), Some(&ada)).await;
        expect(r, field, &format!("{extra:?}"));
    }

    let (cert, key) = engine::testing::acme::self_signed(&["pwned.example.com"], (2025, 1, 1), (2035, 1, 1));
    let (_, other_key) = engine::testing::acme::self_signed(&["pwned.example.com"], (2025, 1, 1), (2035, 1, 1));
    let junk = format!("{cert}\nsome text after the block\n");
    let huge = "A".repeat(5 * 1024 * 1024);
    for (field, c, k, what) in [
        ("certificate", junk.as_str(), key.as_str(), "junk after the PEM block"),
        ("certificate", huge.as_str(), key.as_str(), "a 5 MB certificate"),
        ("key", cert.as_str(), huge.as_str(), "a 5 MB key"),
        ("key", cert.as_str(), other_key.as_str(), "another certificate's key"),
        ("certificate", "", key.as_str(), "no certificate"),
        ("key", cert.as_str(), cert.as_str(), "a certificate for a key"),
    ] {
        let r = app
            .call(
                "apps/upload_certificate",
                &[("id", &ids.domain), ("certificate", c), ("key", k)],
                Some(&ada),
            )
            .await;
        expect(r, field, what);
    }
    // The fixture's domain is not covered by a certificate for another name.
    let r = app
        .call(
            "apps/upload_certificate",
            &[("id", &ids.domain), ("certificate", &cert), ("key", &key)],
            Some(&ada),
        )
        .await;
    expect(r, "certificate", "a certificate for another name");

    for (field, form) in [
        ("acme_directory", vec![("directory", "http://ca.example.com/dir")]),
        // (A private or metadata address is refused too unless the instance
        // allows private targets, as this test instance does: unit-tested.)
        (
            "acme_directory",
            vec![("directory", "https://ca.example.com/dir with space")],
        ),
        ("acme_email", vec![("email", "root@localhost`")]),
        ("dns_provider", vec![("dns_provider", "../../etc")]),
        (
            "dns_credentials",
            vec![
                ("dns_provider", "cloudflare"),
                ("dns_credentials", "LEGO_CA_CERTIFICATES=/etc/shadow"),
            ],
        ),
        ("dns_resolvers", vec![("dns_resolvers", "8.8.8.8")]),
    ] {
        let r = app.call("instance/acme", &form, Some(&ada)).await;
        expect(r, field, &format!("{form:?}"));
    }

    assert_eq!(snapshot(&app, &ada, &ids).await, before, "nothing changed");
    assert_eq!(app.call("instance/get", &[], Some(&ada)).await.body, instance_before);
}

fn field_pairs<'a>(v: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    v.to_vec()
}
