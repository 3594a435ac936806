//! The side-by-side rule for migrations (docs/decisions/0006): every migration
//! after the baseline only expands the schema unless it says it is a contract
//! step, and Berth's queries keep working on a schema a later release widened.

use engine::testing::TestEngine;

/// The last migration written before `berth upgrade` ran two versions side by side.
const BASELINE: &str = "2026-12-02-000008_https";

/// What in `sql` would break the version running beside it (comments and
/// string literals aside): one line per statement found.
fn destructive(sql: &str) -> Vec<String> {
    // Comments out, literals blanked, whitespace folded, upper case.
    let mut text = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                text.push(' ');
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                text.push_str("''");
            }
            c => text.push(c.to_ascii_uppercase()),
        }
    }
    let folded = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for statement in folded.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let has = |p: &str| statement.contains(p);
        let why = if statement.starts_with("DROP TABLE")
            || statement.starts_with("DROP TYPE")
            || statement.starts_with("DROP VIEW")
        {
            Some("drops what the old version reads")
        } else if has("DROP COLUMN") {
            Some("drops a column")
        } else if has(" RENAME ") {
            Some("renames")
        } else if has(" TYPE ") && has("ALTER COLUMN") {
            Some("changes a column's type")
        } else if has("SET NOT NULL") {
            Some("adds NOT NULL to an existing column")
        } else if has("ADD COLUMN") && has("NOT NULL") && !has("DEFAULT") {
            Some("adds a NOT NULL column without a default")
        } else if statement.starts_with("TRUNCATE") || statement.starts_with("DELETE FROM") {
            Some("deletes data")
        } else {
            None
        };
        if let Some(why) = why {
            found.push(format!("{why}: {statement}"));
        }
    }
    found
}

#[test]
fn the_checker_finds_each_kind_of_destructive_statement() {
    for sql in [
        "DROP TABLE apps;",
        "drop type job_status;",
        "ALTER TABLE apps DROP COLUMN name;",
        "ALTER TABLE apps RENAME COLUMN name TO title;",
        "ALTER TABLE apps RENAME TO applications;",
        "ALTER TABLE apps ALTER COLUMN port TYPE bigint;",
        "ALTER TABLE apps ALTER COLUMN note SET NOT NULL;",
        "ALTER TABLE apps ADD COLUMN note text NOT NULL;",
        "TRUNCATE sessions;",
        "DELETE FROM sessions WHERE true;",
    ] {
        assert_eq!(destructive(sql).len(), 1, "{sql}");
    }
    for sql in [
        "CREATE TABLE notes (id uuid PRIMARY KEY, body text NOT NULL);",
        "ALTER TABLE apps ADD COLUMN note text;",
        "ALTER TABLE apps ADD COLUMN weight int NOT NULL DEFAULT 1;",
        "ALTER TABLE apps DROP CONSTRAINT apps_status_check;",
        "CREATE INDEX apps_note_idx ON apps (note);",
        "-- DROP TABLE apps; (a comment)\nSELECT 1;",
        "INSERT INTO settings (k, v) VALUES ('drop table x', 'rename');",
    ] {
        assert!(destructive(sql).is_empty(), "{sql}: {:?}", destructive(sql));
    }
}

#[test]
fn migrations_after_the_baseline_only_expand_unless_marked_contract() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert!(
        names.iter().any(|n| n == BASELINE),
        "the baseline {BASELINE} is among {names:?}"
    );
    let mut problems = Vec::new();
    for name in names.iter().filter(|n| n.as_str() > BASELINE) {
        let sql = std::fs::read_to_string(dir.join(name).join("up.sql")).unwrap();
        if sql.lines().any(|l| l.trim_start().starts_with("-- contract:")) {
            continue;
        }
        for p in destructive(&sql) {
            problems.push(format!("{name}: {p}"));
        }
    }
    assert!(
        problems.is_empty(),
        "not an expand-only migration (docs/decisions/0006-side-by-side-migrations.md):\n{}",
        problems.join("\n")
    );
}

/// Every table gains a nullable and a defaulted column, as a later release's
/// migration may add; signing up, projects, apps, environment variables and
/// deployments still read and write.
#[tokio::test]
async fn berths_queries_work_on_a_widened_schema() {
    use diesel_async::RunQueryDsl;
    let t = TestEngine::new().await;
    let e = &t.engine;
    #[derive(diesel::QueryableByName)]
    struct Table {
        #[diesel(sql_type = diesel::sql_types::Text)]
        tablename: String,
    }
    let mut conn = e.db.get().await.unwrap();
    let tables: Vec<Table> = diesel::sql_query(
        "SELECT tablename::text AS tablename FROM pg_tables
         WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(tables.len() > 10);
    for t in &tables {
        diesel::sql_query(format!(
            "ALTER TABLE \"{}\" ADD COLUMN later_note text, ADD COLUMN later_weight int NOT NULL DEFAULT 7",
            t.tablename
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    drop(conn);

    let (caller, env) = engine::testing::owner_with_environment(e).await;
    let projects = engine::projects::list(e, &caller).await.unwrap();
    assert_eq!(projects.len(), 1);
    let app = engine::testing::create_app(
        e,
        &caller,
        env,
        "web",
        engine::testing::image_source(engine::testing::TEST_BASE_IMAGE),
        engine::testing::httpd_runtime(1),
    )
    .await;
    engine::apps::set_env(e, &caller, app, vec![("GREETING".into(), "hello".into())])
        .await
        .unwrap();
    assert_eq!(
        engine::apps::env_values(e, &caller, app).await.unwrap(),
        vec![("GREETING".to_owned(), "hello".to_owned())]
    );
    let detail = engine::apps::get(e, &caller, app).await.unwrap();
    assert!(!detail.domains.is_empty());
    let deployment = engine::deploy::deploy(e, &caller, app).await.unwrap();
    let history = engine::deploy::list(e, &caller, app, 10).await.unwrap();
    assert_eq!(history.deployments[0].id, deployment);
}
