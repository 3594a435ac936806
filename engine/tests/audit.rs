//! The audit log's store against real PostgreSQL: rows past the retention are
//! dropped, newer ones kept, and a list is scoped to the caller's organization.

use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use engine::audit::{self, Entry, Filter, Outcome};
use engine::testing::TestEngine;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[tokio::test]
async fn rows_past_the_retention_go_and_lists_stay_in_the_organization() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (ada, _) = engine::testing::owner_with_environment(e).await;
    let entry = |action: &str| Entry {
        org: Some(ada.org_id.0),
        actor: ada.actor(),
        action: action.into(),
        target: None,
        outcome: Outcome::Ok,
        status: Some(200),
        client: Some("192.0.2.7".into()),
    };
    audit::record(e, entry("old")).await;
    audit::record(e, entry("new")).await;
    let mut conn = e.db.get().await.unwrap();
    diesel::sql_query("UPDATE audit_log SET at = now() - interval '3 days' WHERE action = 'old'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(audit::prune(e, 2).await.unwrap(), 1);
    let left: i64 = diesel::sql_query("SELECT count(*) AS n FROM audit_log")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
    assert_eq!(left, 1);

    let rows = audit::list(e, ada.audit_reader(), &Filter::parse("", "", "", false).unwrap())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, "new");
    assert!(
        rows[0].actor_label.starts_with("Ada <ada@example.com>"),
        "{}",
        rows[0].actor_label
    );
    let elsewhere = engine::testing::in_other_org(e, &ada).await;
    assert!(
        audit::list(e, elsewhere.audit_reader(), &Filter::parse("", "", "", false).unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

#[derive(diesel::QueryableByName)]
struct Written {
    #[diesel(sql_type = diesel::sql_types::Text)]
    result: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
    status: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    same_transaction: bool,
}

/// A request's row goes in with its change: `now()` is the transaction's
/// start, so a row and a project made in one transaction share their time to
/// the microsecond. Without the edge's settling (a crash after the commit) the
/// row is there, its status empty; a change that rolls back takes its row
/// with it; work outside a request writes none.
#[tokio::test]
async fn a_request_row_commits_with_its_change_or_not_at_all() {
    use engine::names::{Description, ProjectName};
    use engine::{apps, ids::AppId, projects};
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (ada, _) = engine::testing::owner_with_environment(e).await;
    let pending = |action: &str| {
        let (org, actor) = (ada.org_id.0, ada.actor());
        audit::Pending::new(action.into(), None, Some("192.0.2.9".into()), move || {
            Some((Some(org), actor.clone()))
        })
    };
    let mut conn = e.db.get().await.unwrap();

    let made = pending("projects/create");
    let id = audit::scoped(
        made.clone(),
        projects::create(e, &ada, ProjectName::parse("Logged").unwrap(), Description::default()),
    )
    .await
    .unwrap();
    let row: Written = diesel::sql_query(
        "SELECT a.result, a.status, a.at = p.created_at AS same_transaction
         FROM audit_log a, projects p WHERE a.action = 'projects/create' AND p.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.0)
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (row.result.as_str(), row.status, row.same_transaction),
        ("ok", None, true)
    );
    assert!(made.written());

    // The edge settles it: the same row, with the answer's status.
    audit::settle(e, &made, (Some(ada.org_id.0), ada.actor()), 200).await;
    let rows: Vec<Written> = diesel::sql_query(
        "SELECT a.result, a.status, a.at = p.created_at AS same_transaction
         FROM audit_log a, projects p WHERE a.action = 'projects/create' AND p.id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(id.0)
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status, rows[0].same_transaction), (Some(200), true));

    // A change refused inside its transaction leaves no row behind it; the
    // edge then writes the refusal.
    let refused = pending("apps/set_env");
    let missing = AppId(uuid::Uuid::new_v4());
    let r = audit::scoped(refused.clone(), apps::set_env(e, &ada, missing, vec![])).await;
    assert!(r.is_err());
    let count = |action: &'static str| {
        diesel::sql_query("SELECT count(*) AS n FROM audit_log WHERE action = $1")
            .bind::<diesel::sql_types::Text, _>(action)
    };
    assert_eq!(count("apps/set_env").get_result::<Count>(&mut conn).await.unwrap().n, 0);
    audit::settle(e, &refused, (Some(ada.org_id.0), ada.actor()), 404).await;
    assert_eq!(count("apps/set_env").get_result::<Count>(&mut conn).await.unwrap().n, 1);

    // Outside a request the engine writes nothing of its own.
    projects::create(e, &ada, ProjectName::parse("Quiet").unwrap(), Description::default())
        .await
        .unwrap();
    let all: i64 = diesel::sql_query("SELECT count(*) AS n FROM audit_log")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n;
    assert_eq!(all, 2);
}

/// Changes of one statement are transactions with their row as well: each
/// of these, run for a request that never gets to answer (no settling), leaves
/// its row behind, outcome `ok`, status empty.
#[tokio::test]
async fn one_statement_changes_keep_their_row_too() {
    use engine::names::{Description, EnvironmentName, ProjectName, Role};
    use engine::{apps, orgs, projects, twofactor};
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (ada, env) = engine::testing::owner_with_environment(e).await;
    let project = projects::create(e, &ada, ProjectName::parse("Other").unwrap(), Description::default())
        .await
        .unwrap();
    let source = engine::testing::image_source(engine::testing::TEST_BASE_IMAGE);
    let app = engine::testing::create_app(e, &ada, env, "logged", source, Default::default()).await;
    let pending = |action: &str| {
        let (org, actor) = (ada.org_id.0, ada.actor());
        audit::Pending::new(action.into(), None, None, move || Some((Some(org), actor.clone())))
    };
    audit::scoped(
        pending("projects/update"),
        projects::update(
            e,
            &ada,
            project,
            ProjectName::parse("Renamed").unwrap(),
            Description::default(),
        ),
    )
    .await
    .unwrap();
    audit::scoped(
        pending("environments/create"),
        projects::add_environment(e, &ada, project, EnvironmentName::parse("staging").unwrap()),
    )
    .await
    .unwrap();
    audit::scoped(pending("apps/put_env"), apps::put_env(e, &ada, app, "ONE", "1"))
        .await
        .unwrap();
    audit::scoped(
        pending("orgs/invites/create"),
        orgs::create_invite(e, &ada, Role::Member),
    )
    .await
    .unwrap();
    audit::scoped(pending("twofactor/require"), twofactor::set_required(e, &ada, false))
        .await
        .unwrap();
    let mut conn = e.db.get().await.unwrap();
    let n: i64 = diesel::sql_query(
        "SELECT count(*) AS n FROM audit_log WHERE result = 'ok' AND status IS NULL AND action = ANY($1)",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(
        [
            "projects/update",
            "environments/create",
            "apps/put_env",
            "orgs/invites/create",
            "twofactor/require",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .get_result::<Count>(&mut conn)
    .await
    .unwrap()
    .n;
    assert_eq!(n, 5);
}
