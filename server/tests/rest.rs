//! The REST API (`/api/v1`) through the real router, over a real database and
//! Redis: its OpenAPI document (valid references, every documented operation
//! routed and guarded), API keys (shown once, hashed, last use, revoked,
//! expired, unknown, absent), create/read/update/delete of each resource with
//! a key, `ETag`/`If-Match`, cursor pages, and the boundaries: another
//! organization's key gets 404 on every ID-taking operation, a viewer key 403
//! on every write, and nothing changes.

mod common;

use axum::http::StatusCode;
use common::matrix::{body, fixture, operations, snapshot, victim_or_plain, Fixture};
use common::TestApp;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().unwrap_or_default().to_owned());
                } else {
                    refs(x, out);
                }
            }
        }
        Value::Array(xs) => xs.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_every_operation_in_it_is_routed_and_guarded() {
    let app = TestApp::new().await;
    let (doc, ops) = operations(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");

    // What this version offers is all there.
    let listed: BTreeSet<(String, String)> = ops.iter().cloned().collect();
    for (m, p) in [
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("GET", "/projects/{id}"),
        ("PATCH", "/projects/{id}"),
        ("DELETE", "/projects/{id}"),
        ("POST", "/projects/{id}/environments"),
        ("PATCH", "/environments/{id}"),
        ("DELETE", "/environments/{id}"),
        ("GET", "/projects/{id}/apps"),
        ("POST", "/apps"),
        ("GET", "/apps/{id}"),
        ("PATCH", "/apps/{id}"),
        ("DELETE", "/apps/{id}"),
        ("GET", "/apps/{id}/env"),
        ("PUT", "/apps/{id}/env"),
        ("POST", "/apps/{id}/domains"),
        ("GET", "/domains/{id}"),
        ("PATCH", "/domains/{id}"),
        ("DELETE", "/domains/{id}"),
        ("POST", "/apps/{id}/deployments"),
        ("GET", "/apps/{id}/deployments"),
        ("GET", "/deployments/{id}"),
        ("POST", "/deployments/{id}/cancel"),
        ("POST", "/deployments/{id}/rollback"),
        ("GET", "/deployments/{id}/log"),
        ("GET", "/deployments/{id}/events"),
        ("GET", "/apps/{id}/logs"),
        ("GET", "/projects/{id}/services"),
        ("POST", "/services"),
        ("GET", "/services/{id}"),
        ("PATCH", "/services/{id}"),
        ("DELETE", "/services/{id}"),
        ("POST", "/services/{id}/actions"),
        ("POST", "/services/{id}/connection"),
        ("GET", "/destinations"),
        ("POST", "/destinations"),
        ("DELETE", "/destinations/{id}"),
        ("POST", "/destinations/{id}/test"),
        ("GET", "/services/{id}/backups"),
        ("POST", "/services/{id}/backups"),
        ("POST", "/backups/{id}/restore"),
        ("POST", "/backups/{id}/drill"),
        ("POST", "/services/{id}/schedules"),
        ("DELETE", "/schedules/{id}"),
        ("POST", "/schedules/{id}/run"),
        ("GET", "/members"),
        ("PATCH", "/members/{id}"),
        ("DELETE", "/members/{id}"),
        ("PUT", "/members/{id}/access"),
        ("GET", "/invites"),
        ("POST", "/invites"),
        ("DELETE", "/invites/{id}"),
    ] {
        assert!(
            listed.contains(&(m.to_owned(), p.to_owned())),
            "{m} {p} is not in the document"
        );
    }

    // Every reference resolves; every path parameter is declared, in the path, required.
    let mut all = vec![];
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
    for (method, path) in &ops {
        let op = &doc["paths"][format!("/api/v1{path}")][method.to_lowercase()];
        assert!(
            op["responses"].as_object().unwrap().keys().any(|s| s.starts_with('2')),
            "{method} {path} has no success answer"
        );
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(['{', '}']);
            let declared = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
            assert!(declared, "{method} {path}: path parameter {name} is not declared");
        }
    }

    // Every operation is routed to a handler that wants a key (an unrouted
    // one would answer with the pages' 404, not 401).
    let some_id = uuid::Uuid::new_v4().to_string();
    for (method, path) in &ops {
        let r = app.api(method, &path.replace("{id}", &some_id), None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("Bearer"), "{}", r.body);
    }

    // The reference page names every operation, with no script.
    let page = app.api("GET", "/docs", None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(!page.body.contains("<script"));
    for (method, path) in &ops {
        assert!(
            page.body
                .contains(&format!("{method}</span> <code>/api/v1{path}</code>")),
            "{method} {path} is not on the reference page"
        );
    }
}

#[tokio::test]
async fn keys_are_shown_once_stored_hashed_and_refused_when_revoked_expired_unknown_or_absent() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let key = app.key(&ada, "admin").await;
    assert!(key.starts_with("berth_"), "{key}");

    // Listed by prefix, never with the secret; stored as a digest.
    let list = app.call("keys/list", &[], Some(&ada)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    // `berth_` + 12 hex digits + `_`, then the secret (which may hold `_`).
    let secret = &key[19..];
    assert_eq!(secret.len(), 43);
    assert!(!list.body.contains(secret), "the list shows the secret");
    let listed = &list.json()[0];
    assert!(key.contains(listed["prefix"].as_str().unwrap()));
    assert_eq!(listed["last_used"], "never");
    let mut conn = app.t.engine.db.get().await.unwrap();
    use diesel::sql_types::Text;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Text)]
        row: String,
    }
    let stored: Stored = diesel::sql_query("SELECT row_to_json(k)::text AS row FROM api_keys k")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(
        !stored.row.contains(secret),
        "the key is stored as it is: {}",
        stored.row
    );

    // It works, and its use is recorded (when and from where).
    let ok = app.api("GET", "/projects", Some(&key), None).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let list = app.call("keys/list", &[], Some(&ada)).await.json();
    assert_ne!(list[0]["last_used"], "never", "{list}");

    // Absent, malformed, unknown: 401 with a message that says what to send.
    for bad in [
        None,
        Some("nope"),
        Some(&*format!("berth_000000000000_{}", "A".repeat(43))),
    ] {
        let r = app.api("GET", "/projects", bad, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}: {}", r.body);
        assert!(r.json()["error"].is_string());
    }
    // A cookie is not a credential here.
    let r = app.api_with("GET", "/projects", None, None, &[("cookie", &ada)]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // Expired.
    let expiring = app
        .call(
            "keys/create",
            &[("name", "short"), ("role", "member"), ("expires_in_days", "1")],
            Some(&ada),
        )
        .await;
    assert_eq!(expiring.status, StatusCode::OK, "{}", expiring.body);
    let expiring = expiring.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.api("GET", "/projects", Some(&expiring), None).await.status,
        StatusCode::OK
    );
    diesel::sql_query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'short'")
        .execute(&mut conn)
        .await
        .unwrap();
    let r = app.api("GET", "/projects", Some(&expiring), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);

    // Revoked.
    let id = app.call("keys/list", &[], Some(&ada)).await.json()[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = app.call("keys/revoke", &[("id", &id)], Some(&ada)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    let r = app.api("GET", "/projects", Some(&key), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(r.body.contains("revoked"), "{}", r.body);

    // Bad inputs name their field and make nothing.
    for (form, field) in [
        (vec![("name", ""), ("role", "member")], "name"),
        (vec![("name", "x"), ("role", "root")], "role"),
        (
            vec![("name", "x"), ("role", "member"), ("expires_in_days", "0")],
            "expires_in_days",
        ),
    ] {
        let r = app.call("keys/create", &form, Some(&ada)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert!(r.body.contains(field), "{}", r.body);
    }
    // A member cannot make a key above their role, nor one with instance powers.
    let (_, bob) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    let r = app
        .call("keys/create", &[("name", "x"), ("role", "admin")], Some(&bob))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = app
        .call(
            "keys/create",
            &[("name", "x"), ("role", "member"), ("instance", "on")],
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Bob sees only his own keys; he cannot revoke Ada's (not found).
    let bobs = app.key(&bob, "member").await;
    let seen = app.call("keys/list", &[], Some(&bob)).await.json();
    assert_eq!(seen.as_array().unwrap().len(), 1, "{seen}");
    let adas = app.call("keys/list", &[], Some(&ada)).await.json();
    let ada_key = adas.as_array().unwrap().iter().find(|k| k["owner"] == "Ada").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.call("keys/revoke", &[("id", &ada_key)], Some(&bob)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // Removed from the organization, Bob's key stops working at once.
    let members = app.call("orgs/members", &[], Some(&ada)).await.json();
    let bob_id = members.as_array().unwrap().iter().find(|m| m["name"] == "Bob").unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.api("GET", "/projects", Some(&bobs), None).await.status,
        StatusCode::OK
    );
    let removed = app
        .call("orgs/members/remove", &[("user_id", &bob_id)], Some(&ada))
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert_eq!(
        app.api("GET", "/projects", Some(&bobs), None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn projects_and_environments_round_trip_with_etags_and_pages() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let key = app.key(&ada, "owner").await;

    let made = app
        .api(
            "POST",
            "/projects",
            Some(&key),
            Some(json!({"name": "Shop", "description": "the shop"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let project = made.json();
    let pid = project["id"].as_str().unwrap().to_owned();
    assert_eq!(project["environments"][0]["name"], "production");

    let read = app.api("GET", &format!("/projects/{pid}"), Some(&key), None).await;
    assert_eq!(read.status, StatusCode::OK);
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(read.json()["description"], "the shop");

    // An update against the tag read: applied; against a stale one: 412, unchanged.
    let changed = app
        .api_with(
            "PATCH",
            &format!("/projects/{pid}"),
            Some(&key),
            Some(json!({"description": "the new shop"})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.json()["name"], "Shop");
    assert_eq!(changed.json()["description"], "the new shop");
    assert_ne!(changed.headers["etag"].to_str().unwrap(), tag);
    let stale = app
        .api_with(
            "PATCH",
            &format!("/projects/{pid}"),
            Some(&key),
            Some(json!({"name": "Lost update"})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    let now = app
        .api("GET", &format!("/projects/{pid}"), Some(&key), None)
        .await
        .json();
    assert_eq!(now["name"], "Shop");

    // Bad input: 422 naming the field, nothing changes.
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": 5}), "name"),
        (json!({"name": "ok", "owner": "me"}), "owner"),
        (json!({"name": "a\u{0}b"}), "name"),
    ] {
        let r = app
            .api("PATCH", &format!("/projects/{pid}"), Some(&key), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
    }
    let r = app.api("POST", "/projects", Some(&key), Some(json!({}))).await;
    assert_eq!(r.json()["field"], "name", "{}", r.body);
    let r = app.api("GET", "/projects?limit=1000", Some(&key), None).await;
    assert_eq!(r.json()["field"], "limit", "{}", r.body);
    assert_eq!(
        app.api("GET", &format!("/projects/{pid}"), Some(&key), None)
            .await
            .json()["name"],
        "Shop"
    );

    // Environments.
    let env = app
        .api(
            "POST",
            &format!("/projects/{pid}/environments"),
            Some(&key),
            Some(json!({"name": "staging"})),
        )
        .await;
    assert_eq!(env.status, StatusCode::CREATED, "{}", env.body);
    let eid = env.json()["id"].as_str().unwrap().to_owned();
    let renamed = app
        .api(
            "PATCH",
            &format!("/environments/{eid}"),
            Some(&key),
            Some(json!({"name": "preview"})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::NO_CONTENT, "{}", renamed.body);
    let names: Vec<String> = app
        .api("GET", &format!("/projects/{pid}"), Some(&key), None)
        .await
        .json()["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"preview".to_owned()), "{names:?}");
    let gone = app
        .api("DELETE", &format!("/environments/{eid}"), Some(&key), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);

    // Pages: every project once, in name order.
    for n in 0..6 {
        let r = app
            .api("POST", "/projects", Some(&key), Some(json!({"name": format!("P{n}")})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/projects?limit=3".to_owned(),
            Some(c) => format!("/projects?limit=3&cursor={c}"),
        };
        let page = app.api("GET", &path, Some(&key), None).await.json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned()),
        );
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["P0", "P1", "P2", "P3", "P4", "P5", "Shop"]);

    // Delete, then it is gone.
    let del = app.api("DELETE", &format!("/projects/{pid}"), Some(&key), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    let r = app.api("GET", &format!("/projects/{pid}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn apps_with_variables_domains_and_deployments_round_trip() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let key = app.key(&ada, "owner").await;
    let project = app
        .api("POST", "/projects", Some(&key), Some(json!({"name": "Web"})))
        .await
        .json();
    let pid = project["id"].as_str().unwrap();
    let env = project["environments"][0]["id"].as_str().unwrap();

    let made = app
        .api(
            "POST",
            "/apps",
            Some(&key),
            Some(json!({"environment_id": env, "name": "site", "source": "image", "image": "nginx:1.27"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let aid = made.json()["id"].as_str().unwrap().to_owned();
    let bad = app
        .api(
            "POST",
            "/apps",
            Some(&key),
            Some(json!({"environment_id": env, "name": "Bad Name", "source": "image", "image": "nginx"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.json()["field"], "name");
    let listed = app
        .api("GET", &format!("/projects/{pid}/apps"), Some(&key), None)
        .await
        .json();
    assert_eq!(listed["items"][0]["name"], "site", "{listed}");

    // Runtime: a partial change through the same parse as the page's form.
    let read = app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await;
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(read.json()["runtime"]["port"], 80);
    let patched = app
        .api_with(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"runtime": {"port": 8080, "command": ["/bin/site", "--say", "hello world"], "drain_secs": 2}})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let rt = &patched.json()["runtime"];
    assert_eq!(rt["port"], 8080);
    assert_eq!(rt["command"], json!(["/bin/site", "--say", "hello world"]));
    assert_eq!(rt["drain_secs"], 2);
    assert_eq!(rt["restart"], "unless-stopped");
    let r = app
        .api(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"runtime": {"memory_mb": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "memory_mb");
    let r = app
        .api(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"runtime": {"port": "x"}})),
        )
        .await;
    assert_eq!(r.json()["field"], "runtime.port", "{}", r.body);

    // Source: a partial change through the same parse as the page's form.
    let read = app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await;
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    let patched = app
        .api_with(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"source": {"image": "registry.example.com/team/site:2"}})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let src = &patched.json()["source"];
    assert_eq!(src["kind"], "image");
    assert_eq!(src["image"], "registry.example.com/team/site:2");
    assert_eq!(patched.json()["runtime"]["port"], 8080, "the runtime stayed");
    let r = app
        .api_with(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"source": {"image": "nginx"}})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "a stale tag: {}", r.body);
    let r = app
        .api(
            "PATCH",
            &format!("/apps/{aid}"),
            Some(&key),
            Some(json!({"source": {"kind": "git", "repository": "ext::sh -c id"}, "runtime": {"port": 9090}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "source.repository", "{}", r.body);
    let after = app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await.json();
    assert_eq!(after["runtime"]["port"], 8080, "a refused change changed nothing");
    assert_eq!(after["source"]["image"], "registry.example.com/team/site:2");

    // Variables, byte for byte.
    let vars = json!({"vars": {
        "PLAIN": "value",
        "TRICKY": "a=b #not a comment $HOME 'q' \"dq\"",
        "MULTI": "line one\nline two",
        "UNICODE": "héllo ✓",
        "EMPTY": "",
    }});
    let set = app
        .api("PUT", &format!("/apps/{aid}/env"), Some(&key), Some(vars.clone()))
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{}", set.body);
    let got = app.api("GET", &format!("/apps/{aid}/env"), Some(&key), None).await;
    assert_eq!(got.json(), vars);
    let r = app
        .api(
            "PUT",
            &format!("/apps/{aid}/env"),
            Some(&key),
            Some(json!({"vars": {"1BAD": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "env");
    assert_eq!(
        app.api("GET", &format!("/apps/{aid}/env"), Some(&key), None)
            .await
            .json(),
        vars
    );
    // Names only in the app itself.
    let read = app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await;
    assert!(!read.body.contains("line two"), "{}", read.body);

    // Domains.
    let d = app
        .api(
            "POST",
            &format!("/apps/{aid}/domains"),
            Some(&key),
            Some(json!({"host": "shop.example.com"})),
        )
        .await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
    let did = d.json()["id"].as_str().unwrap().to_owned();
    let hosts = app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await.json()["domains"].clone();
    assert!(hosts.to_string().contains("shop.example.com"), "{hosts}");
    let r = app
        .api(
            "POST",
            &format!("/apps/{aid}/domains"),
            Some(&key),
            Some(json!({"host": "not a host"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    // HTTPS and proxy options: a partial change through the page's parse.
    let read = app.api("GET", &format!("/domains/{did}"), Some(&key), None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.json()["options"]["compress"], false);
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    let patched = app
        .api_with(
            "PATCH",
            &format!("/domains/{did}"),
            Some(&key),
            Some(json!({"compress": true, "hsts_max_age": 3600, "headers": {"X-Team": "blue"}, "basic_auth": ["eve:a long secret"]})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let o = &patched.json()["options"];
    assert_eq!(o["compress"], true);
    assert_eq!(o["hsts_max_age"], 3600);
    assert_eq!(o["headers"]["X-Team"], "blue");
    assert_eq!(o["basic_auth_users"], json!(["eve"]));
    assert!(!patched.body.contains("a long secret"), "{}", patched.body);
    // A user alone keeps the password; other fields stay.
    let again = app
        .api(
            "PATCH",
            &format!("/domains/{did}"),
            Some(&key),
            Some(json!({"rate_average": 50})),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.json()["options"]["rate_average"], 50);
    assert_eq!(again.json()["options"]["basic_auth_users"], json!(["eve"]));
    assert_eq!(again.json()["options"]["compress"], true);
    let r = app
        .api(
            "PATCH",
            &format!("/domains/{did}"),
            Some(&key),
            Some(json!({"www": "sideways"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "www");
    let gone = app.api("DELETE", &format!("/domains/{did}"), Some(&key), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);

    // Deploy (queued: no worker runs here), see it, cancel it.
    let dep = app
        .api("POST", &format!("/apps/{aid}/deployments"), Some(&key), None)
        .await;
    assert_eq!(dep.status, StatusCode::ACCEPTED, "{}", dep.body);
    let dep = dep.json()["id"].as_str().unwrap().to_owned();
    let one = app
        .api("GET", &format!("/deployments/{dep}"), Some(&key), None)
        .await
        .json();
    assert_eq!(one["status"], "queued");
    assert_eq!(one["trigger"], "api");
    let cancel = app
        .api("POST", &format!("/deployments/{dep}/cancel"), Some(&key), None)
        .await;
    assert_eq!(cancel.status, StatusCode::NO_CONTENT, "{}", cancel.body);
    let history = app
        .api("GET", &format!("/apps/{aid}/deployments"), Some(&key), None)
        .await
        .json();
    assert_eq!(history["items"][0]["status"], "cancelled", "{history}");
    assert_eq!(history["items"][0]["finished"], true);
    let r = app
        .api("POST", &format!("/deployments/{dep}/rollback"), Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let log = app
        .api("GET", &format!("/deployments/{dep}/log"), Some(&key), None)
        .await;
    assert_eq!(log.status, StatusCode::OK);

    // A member's key cannot delete the app; an owner's can.
    let (_, bob) = app.join(&ada, "member", "Bob", "bob@example.com").await;
    let bobs = app.key(&bob, "member").await;
    let r = app.api("DELETE", &format!("/apps/{aid}"), Some(&bobs), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = app
        .api("DELETE", &format!("/apps/{aid}?remove_volumes=maybe"), Some(&key), None)
        .await;
    assert_eq!(r.json()["field"], "remove_volumes", "{}", r.body);
    let r = app.api("DELETE", &format!("/apps/{aid}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        app.api("GET", &format!("/apps/{aid}"), Some(&key), None).await.status,
        StatusCode::NOT_FOUND
    );
}

/// A body each write accepts (so a refusal is the boundary's, not the input's).
#[tokio::test]
async fn another_organizations_key_finds_nothing_and_a_viewer_key_only_reads() {
    let app = TestApp::new().await;
    let Fixture { ada, ids, .. } = fixture(&app).await;
    let (_, ops) = operations(&app).await;

    // Mallory: the owner of another organization, with an owner's key there.
    let other = app
        .call("orgs/create", &[("organization", "Mallory Inc")], Some(&ada))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let intruder = app.key(&ada, "owner").await;
    let back = app.call("orgs/switch", &[("id", &ids.org)], Some(&ada)).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let viewer = app.key(&ada, "viewer").await;

    // The viewer key's first use is recorded now, not inside the snapshots.
    assert_eq!(
        app.api("GET", "/projects", Some(&viewer), None).await.status,
        StatusCode::OK
    );
    let (doc, _) = operations(&app).await;
    let before = snapshot(&app, &ada, &ids).await;
    let mut id_ops = 0;
    for (method, path) in &ops {
        let target = victim_or_plain(path, &ids);
        let b = body(method, path, &ids);
        let writes = method != "GET";
        let takes_body = doc["paths"][format!("/api/v1{path}")][method.to_lowercase()]["requestBody"].is_object();
        assert_eq!(takes_body, b.is_some(), "{method} {path}: give it a body in body()");
        // Another organization's key: every ID is not found.
        if path.contains("{id}") || path == "/apps" {
            let r = app.api(method, &target, Some(&intruder), b.clone()).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path} with another organization's key: {}",
                r.body
            );
            id_ops += 1;
        }
        // A viewer key: reads answer, writes are 403.
        if path.ends_with("/events") || path.ends_with("/logs") {
            // Streams: the answer's head is enough (the fixture's deployment is
            // queued, so its stream stays open; its app does not run).
            let (status, headers) = app.api_head(method, &target, Some(&viewer)).await;
            let streaming = headers
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
            assert!(
                streaming || status == StatusCode::CONFLICT,
                "{method} {path} with a viewer key: {status}"
            );
            continue;
        }
        let r = app.api(method, &target, Some(&viewer), b).await;
        // Secret values and admins' lists are not a viewer's to read either.
        let refused_read = matches!(path.as_str(), "/apps/{id}/env" | "/invites");
        if writes || refused_read {
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{method} {path} with a viewer key: {}",
                r.body
            );
        } else {
            assert!(
                r.status.is_success(),
                "{method} {path} with a viewer key: {} {}",
                r.status,
                r.body
            );
        }
    }
    assert!(id_ops >= 40, "{id_ops}");

    // Every write was recorded once, refused, naming the viewer's key.
    let mut conn = app.t.engine.db.get().await.unwrap();
    for (method, path) in ops.iter().filter(|(m, _)| m != "GET") {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel_async::RunQueryDsl;
        let n = diesel::sql_query(
            "SELECT count(*) AS n FROM audit_log a JOIN api_keys k ON k.id = a.actor_key
             WHERE k.name = 'viewer key' AND a.action = $1 AND a.result = 'denied'
               AND a.actor_label LIKE 'Ada <ada@example.com> via key viewer key%'",
        )
        .bind::<diesel::sql_types::Text, _>(format!("{method} /api/v1{path}"))
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n;
        assert_eq!(n, 1, "{method} {path}: {n} audit rows naming the viewer key");
    }
    assert_eq!(
        before,
        snapshot(&app, &ada, &ids).await,
        "a refused call changed something"
    );
}

#[tokio::test]
async fn services_backups_and_members_round_trip() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let key = app.key(&ada, "owner").await;
    let viewer = app.key(&ada, "viewer").await;
    let project = app
        .api("POST", "/projects", Some(&key), Some(json!({"name": "Data"})))
        .await
        .json();
    let pid = project["id"].as_str().unwrap();
    let env = project["environments"][0]["id"].as_str().unwrap();
    let name = format!("db-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    // A service: created, read with its ETag, changed against it.
    let made = app
        .api(
            "POST",
            "/services",
            Some(&key),
            Some(json!({"environment_id": env, "name": name, "engine": "redis"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let sid = made.json()["id"].as_str().unwrap().to_owned();
    let read = app.api("GET", &format!("/services/{sid}"), Some(&key), None).await;
    let tag = read.headers["etag"].to_str().unwrap().to_owned();
    let changed = app
        .api_with(
            "PATCH",
            &format!("/services/{sid}"),
            Some(&key),
            Some(json!({"memory_mb": 128})),
            &[("if-match", &tag)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.json()["memory_mb"], 128);
    assert_eq!(changed.json()["engine"], "redis");
    let r = app
        .api(
            "PATCH",
            &format!("/services/{sid}"),
            Some(&key),
            Some(json!({"memory_mb": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "memory_mb");
    let listed = app
        .api("GET", &format!("/projects/{pid}/services"), Some(&key), None)
        .await;
    assert_eq!(listed.json()["items"][0]["name"], name.as_str());

    // The password: on explicit request, never to a viewer, never in a read.
    let conn = app
        .api("POST", &format!("/services/{sid}/connection"), Some(&key), None)
        .await;
    assert_eq!(conn.status, StatusCode::OK, "{}", conn.body);
    let password = conn.json()["password"].as_str().unwrap().to_owned();
    assert!(password.len() >= 16);
    let r = app
        .api("POST", &format!("/services/{sid}/connection"), Some(&viewer), None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.api("GET", &format!("/services/{sid}"), Some(&viewer), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.body.contains(&password), "a read shows the password");

    // A destination (its secret never comes back), a schedule, a backup queued.
    let d = app
        .api(
            "POST",
            "/destinations",
            Some(&key),
            Some(json!({"name": "Bucket", "endpoint": "http://127.0.0.1:9", "bucket": "backups", "access_key": "AK", "secret_key": "canary-secret-key", "path_style": true})),
        )
        .await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
    let did = d.json()["id"].as_str().unwrap().to_owned();
    let list = app.api("GET", "/destinations", Some(&key), None).await;
    assert!(
        list.body.contains("Bucket") && !list.body.contains("canary-secret-key"),
        "{}",
        list.body
    );
    let r = app
        .api(
            "POST",
            &format!("/services/{sid}/schedules"),
            Some(&key),
            Some(json!({"destination_id": did, "cron": "every day", "keep_last": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "cron");
    let sched = app
        .api(
            "POST",
            &format!("/services/{sid}/schedules"),
            Some(&key),
            Some(json!({"destination_id": did, "cron": "0 3 * * *", "timezone": "Europe/Paris", "keep_last": 3})),
        )
        .await;
    assert_eq!(sched.status, StatusCode::CREATED, "{}", sched.body);
    let scid = sched.json()["id"].as_str().unwrap().to_owned();
    let queued = app
        .api(
            "POST",
            &format!("/services/{sid}/backups"),
            Some(&key),
            Some(json!({"destination_id": did})),
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{}", queued.body);
    let history = app
        .api("GET", &format!("/services/{sid}/backups"), Some(&key), None)
        .await
        .json();
    assert_eq!(history["backups"][0]["status"], "queued", "{history}");
    assert_eq!(history["schedules"][0]["cron"], "0 3 * * *");
    assert!(
        !history["schedules"][0]["next_runs"].as_array().unwrap().is_empty(),
        "{history}"
    );
    let r = app.api("DELETE", &format!("/schedules/{scid}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    // Deleting takes the service's name again.
    let r = app
        .api("DELETE", &format!("/services/{sid}?confirm=wrong"), Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "confirm");
    let r = app
        .api("DELETE", &format!("/services/{sid}?confirm={name}"), Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        app.api("GET", &format!("/services/{sid}"), Some(&key), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Members: an invite link, a role changed, a member removed.
    let inv = app
        .api("POST", "/invites", Some(&key), Some(json!({"role": "member"})))
        .await;
    assert_eq!(inv.status, StatusCode::CREATED, "{}", inv.body);
    assert!(inv.json()["link"].as_str().unwrap().contains("/invite/"));
    let open = app.api("GET", "/invites", Some(&key), None).await.json();
    assert_eq!(open["items"].as_array().unwrap().len(), 1, "{open}");
    let iid = inv.json()["id"].as_str().unwrap().to_owned();
    let r = app.api("DELETE", &format!("/invites/{iid}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    app.join(&ada, "member", "Bob", "bob@example.com").await;
    let members = app.api("GET", "/members", Some(&key), None).await.json();
    let bob = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Bob")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .api(
            "PATCH",
            &format!("/members/{bob}"),
            Some(&key),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = app
        .api(
            "PATCH",
            &format!("/members/{bob}"),
            Some(&key),
            Some(json!({"role": "god"})),
        )
        .await;
    assert_eq!(r.json()["field"], "role", "{}", r.body);
    let members = app.api("GET", "/members", Some(&key), None).await.json();
    let bobs_role = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Bob")
        .unwrap()["role"]
        .clone();
    assert_eq!(bobs_role, "admin");
    let r = app.api("DELETE", &format!("/members/{bob}"), Some(&key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

/// An application named `site` from an image, made through the API in
/// environment `env`: its ID.
async fn image_app(app: &TestApp, key: &str, env: &str) -> String {
    let made = app
        .api(
            "POST",
            "/apps",
            Some(key),
            Some(json!({"environment_id": env, "name": "site", "source": "image", "image": "nginx:1.27"})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    made.json()["id"].as_str().unwrap().to_owned()
}

/// Sends `PATCH path` while another transaction holds the row's lock, and
/// once the request waits for that lock, changes the row there (`change`,
/// SQL) and commits: a writer that got in between the PATCH's read and its
/// write, made deterministic.
async fn patch_across_a_write(
    app: &TestApp,
    key: &str,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
    lock: &str,
    change: &str,
) -> common::Reply {
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    let mut holder = app.t.engine.db.get().await.unwrap();
    holder.batch_execute(&format!("BEGIN; {lock}")).await.unwrap();
    let other = async {
        let mut watch = app.t.engine.db.get().await.unwrap();
        let mut waited = false;
        for _ in 0..400 {
            let waiting: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "(SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database())",
            ))
            .get_result(&mut watch)
            .await
            .unwrap();
            if waiting > 0 {
                waited = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(waited, "the PATCH never waited for the row's lock");
        holder.batch_execute(&format!("{change}; COMMIT")).await.unwrap();
    };
    let (reply, ()) = tokio::join!(app.api_with("PATCH", path, Some(key), Some(body), headers), other);
    reply
}

#[tokio::test]
async fn a_write_between_an_updates_read_and_its_write_is_never_undone() {
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let key = app.key(&ada, "owner").await;
    let project = app
        .api(
            "POST",
            "/projects",
            Some(&key),
            Some(json!({"name": "Shop", "description": "one"})),
        )
        .await
        .json();
    let pid = project["id"].as_str().unwrap().to_owned();
    let env = project["environments"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/projects/{pid}");
    let lock = format!("SELECT 1 FROM projects WHERE id = '{pid}' FOR UPDATE");

    // With If-Match: the tag matched when read, the row changed before the
    // write: 412, and the other writer's change stands.
    let tag = app.api("GET", &path, Some(&key), None).await.headers["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = patch_across_a_write(
        &app,
        &key,
        &path,
        json!({"name": "Renamed"}),
        &[("if-match", &tag)],
        &lock,
        &format!("UPDATE projects SET description = 'two' WHERE id = '{pid}'"),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let now = app.api("GET", &path, Some(&key), None).await.json();
    assert_eq!(
        (now["name"].as_str(), now["description"].as_str()),
        (Some("Shop"), Some("two"))
    );

    // Without If-Match: the PATCH is merged again into what is there now, so
    // both changes hold (before, its stale read of the description was written back).
    let r = patch_across_a_write(
        &app,
        &key,
        &path,
        json!({"name": "Renamed"}),
        &[],
        &lock,
        &format!("UPDATE projects SET description = 'three' WHERE id = '{pid}'"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.json()["name"].as_str(), r.json()["description"].as_str()),
        (Some("Renamed"), Some("three"))
    );

    // An app's runtime: the PATCH changes the port while another writer
    // changes the memory limit; both stand, and with a stale If-Match, 412.
    let aid = image_app(&app, &key, &env).await;
    let path = format!("/apps/{aid}");
    let lock = format!("SELECT 1 FROM applications WHERE id = '{aid}' FOR UPDATE");
    let memory = |mb: u32| {
        format!("UPDATE applications SET runtime = jsonb_set(runtime, '{{memory_mb}}', '{mb}') WHERE id = '{aid}'")
    };
    let r = patch_across_a_write(
        &app,
        &key,
        &path,
        json!({"runtime": {"port": 8080}}),
        &[],
        &lock,
        &memory(256),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["runtime"]["port"], 8080, "{}", r.body);
    assert_eq!(r.json()["runtime"]["memory_mb"], 256, "{}", r.body);
    let tag = r.headers["etag"].to_str().unwrap().to_owned();
    let r = patch_across_a_write(
        &app,
        &key,
        &path,
        json!({"runtime": {"port": 9090}}),
        &[("if-match", &tag)],
        &lock,
        &memory(512),
    )
    .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.body);
    let now = app.api("GET", &path, Some(&key), None).await.json();
    assert_eq!(
        (now["runtime"]["port"].as_u64(), now["runtime"]["memory_mb"].as_u64()),
        (Some(8080), Some(512))
    );
}

#[tokio::test]
async fn an_open_stream_ends_when_its_key_is_revoked() {
    use tower::ServiceExt;
    let app = TestApp::new().await;
    let ada = app.onboard().await;
    let made = app
        .call("keys/create", &[("name", "streams"), ("role", "owner")], Some(&ada))
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let (key, key_id) = (
        made.json()["key"].as_str().unwrap().to_owned(),
        made.json()["id"].as_str().unwrap().to_owned(),
    );
    let project = app
        .api("POST", "/projects", Some(&key), Some(json!({"name": "Web"})))
        .await
        .json();
    let env = project["environments"][0]["id"].as_str().unwrap().to_owned();
    let aid = image_app(&app, &key, &env).await;
    // Queued, with no worker here to take it: its stream stays open.
    let queued = app
        .api("POST", &format!("/apps/{aid}/deployments"), Some(&key), None)
        .await;
    assert!(queued.status.is_success(), "{}", queued.body);
    let did = queued.json()["id"].as_str().unwrap().to_owned();
    let req = axum::http::Request::get(format!("/api/v1/deployments/{did}/events"))
        .header(axum::http::header::HOST, &app.host)
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {key}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body().into_data_stream();
    assert!(
        !common::ends_within(&mut body, 2, Result::is_err).await,
        "the stream ended with its key still valid"
    );
    let revoked = app.call("keys/revoke", &[("id", &key_id)], Some(&ada)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(
        common::ends_within(&mut body, 15, Result::is_err).await,
        "a revoked key's stream stayed open"
    );
}
