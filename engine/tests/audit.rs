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
