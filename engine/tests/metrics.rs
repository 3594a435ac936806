//! Resource figures against real Docker, checked against `docker stats`: a
//! container that holds 100 MiB of its own after writing and reading 500 MiB
//! of files shows about 100 MiB (the inactive page cache it can give back is
//! not counted), and a container spinning on one core shows about 100 % CPU.

use engine::docker::{ContainerSpec, LABEL_INSTANCE};
use engine::metrics::Sampler;
use engine::testing::{TestEngine, TEST_BASE_IMAGE};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;

/// `docker stats --no-stream` for `names`: each one's CPU percent and memory
/// in MiB, as the command prints them.
fn docker_stats(names: &[&str]) -> Vec<(String, f64, f64)> {
    let out = std::process::Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}} {{.CPUPerc}} {{.MemUsage}}",
        ])
        .args(names)
        .output()
        .expect("the docker command");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = |v: &str| -> f64 {
        let (n, scale) = [("GiB", 1024.0), ("MiB", 1.0), ("KiB", 1.0 / 1024.0), ("B", 1.0 / MIB)]
            .iter()
            .find_map(|(u, s)| v.strip_suffix(u).map(|n| (n, *s)))
            .unwrap_or_else(|| panic!("a size: {v}"));
        n.parse::<f64>().unwrap() * scale
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].trim_end_matches('%').parse().unwrap(), unit(f[2]))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_leaves_out_the_page_cache_and_cpu_counts_a_busy_core() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let instance = format!("bm{tag}");
    let (mem, burn) = (format!("{instance}-mem"), format!("{instance}-burn"));
    let run = |name: &str, script: &str| {
        let mut spec = ContainerSpec::new(name, TEST_BASE_IMAGE);
        spec.cmd = Some(vec!["sh".into(), "-c".into(), script.into()]);
        spec.labels.insert(LABEL_INSTANCE.into(), instance.clone());
        spec
    };
    // 500 MiB written and read back (direct I/O: a second read through the
    // cache would make it active cache, which the kernel keeps longer and
    // `docker stats` counts as used), then 100 MB held by awk in a string.
    let holder = run(
        &mem,
        "dd if=/dev/zero of=/f bs=1M count=500 2>/dev/null && dd if=/f of=/dev/null bs=1M iflag=direct 2>/dev/null && \
         awk 'BEGIN { s = sprintf(\"%100000000s\", \"\"); system(\"sleep 600\") }'",
    );
    let spinner = run(&burn, "while :; do :; done");
    for spec in [&holder, &spinner] {
        e.docker.create_container(spec).await.unwrap();
        e.docker.start_container(&spec.name).await.unwrap();
    }
    struct Gone([String; 2]);
    impl Drop for Gone {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = std::process::Command::new("docker").args(["rm", "-f", n]).output();
            }
        }
    }
    let _gone = Gone([mem.clone(), burn.clone()]);

    // Until the file was written and read and the string is held.
    let start = Instant::now();
    loop {
        let s = e.docker.stats(&mem).await.unwrap();
        if s.memory_usage as f64 > 550.0 * MIB && s.memory_used() as f64 > 90.0 * MIB {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "never filled: {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let names = Sampler::running(&*e.docker, &instance).await.unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    let mut sampler = Sampler::default();
    assert!(
        sampler.sample(&*e.docker, &names).await.unwrap().is_empty(),
        "no figure from one reading"
    );
    // The docker command measures its own second meanwhile.
    let reference = docker_stats(&[&mem, &burn]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let figures = sampler.sample(&*e.docker, &names).await.unwrap();
    let ours = |n: &str| figures.iter().find(|(c, _)| c == n).unwrap().1;
    let theirs = |n: &str| reference.iter().find(|(c, _, _)| c == n).cloned().unwrap();

    let (m, (_, _, m_ref)) = (ours(&mem), theirs(&mem));
    let m_mib = m.memory_bytes as f64 / MIB;
    assert!((90.0..130.0).contains(&m_mib), "holding ~95 MiB, shown {m_mib:.1} MiB");
    assert!(
        (m_mib - m_ref).abs() <= m_ref * 0.1,
        "ours {m_mib:.1} MiB, docker stats {m_ref:.1} MiB"
    );

    let (b, (_, b_ref, _)) = (ours(&burn), theirs(&burn));
    eprintln!(
        "memory {m_mib:.1} MiB (docker stats {m_ref:.1}); cpu {:.1} % (docker stats {b_ref:.1})",
        b.cpu_percent
    );
    assert!(b.cpu_percent > 60.0, "a spinning core shown at {:.1} %", b.cpu_percent);
    assert!(
        (b.cpu_percent - b_ref).abs() <= b_ref * 0.1 + 5.0,
        "ours {:.1} %, docker stats {b_ref:.1} %",
        b.cpu_percent
    );
}

fn point(at: chrono::DateTime<chrono::Utc>, cpu: f32, rx: i64) -> engine::metrics::store::Point {
    engine::metrics::store::Point {
        at,
        cpu_percent: cpu,
        memory_bytes: 1000,
        memory_limit: 4000,
        rx_bytes: rx,
        tx_bytes: 0,
        read_bytes: 0,
        write_bytes: 0,
        load1: None,
        disk_used: None,
        disk_total: None,
        docker_disk_used: None,
        docker_disk_total: None,
    }
}

/// Raw points become minute points (CPU averaged, bytes added up), a second
/// roll-up changes nothing, retention drops what is past it, and a series is
/// one subject's alone.
#[tokio::test]
async fn points_roll_up_into_minutes_age_out_and_stay_with_their_subject() {
    use diesel_async::RunQueryDsl;
    use engine::metrics::{store, Subject};
    let t = TestEngine::new().await;
    let mut conn = t.engine.db.get().await.unwrap();
    let (a, b) = (Subject::App(uuid::Uuid::new_v4()), Subject::App(uuid::Uuid::new_v4()));
    let now = chrono::Utc::now();
    let minute = chrono::DateTime::from_timestamp(now.timestamp() / 60 * 60 - 600, 0).unwrap();
    let old = now - chrono::Duration::hours(3);
    let points = vec![
        (a, point(minute + chrono::Duration::seconds(10), 10.0, 100)),
        (a, point(minute + chrono::Duration::seconds(20), 30.0, 200)),
        (b, point(minute + chrono::Duration::seconds(10), 90.0, 5)),
        (a, point(old, 50.0, 1)),
    ];
    assert_eq!(store::insert(&mut conn, 10, &points).await.unwrap(), 4);
    assert_eq!(
        store::insert(&mut conn, 10, &points).await.unwrap(),
        0,
        "a pass written twice counts once"
    );

    let since = minute - chrono::Duration::minutes(1);
    let made = store::roll_up(&mut conn, 10, 60, since).await.unwrap();
    assert_eq!(made, 2, "one minute point for each app");
    assert_eq!(
        store::roll_up(&mut conn, 10, 60, since).await.unwrap(),
        2,
        "rewritten, not added"
    );
    let minutes = store::series(&mut conn, a, 60, since).await.unwrap();
    assert_eq!(minutes.len(), 1);
    assert_eq!(
        (minutes[0].at, minutes[0].cpu_percent, minutes[0].rx_bytes),
        (minute, 20.0, 300)
    );
    assert_eq!(
        store::series(&mut conn, b, 60, since).await.unwrap()[0].cpu_percent,
        90.0
    );

    let keep = engine::config::MetricsConfig {
        raw_hours: 1,
        ..Default::default()
    };
    assert_eq!(
        store::prune(&mut conn, 10, &keep).await.unwrap(),
        1,
        "the raw point three hours old"
    );
    let raw = store::series(&mut conn, a, 10, old - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(raw.len(), 2);
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT count(*) AS n FROM metric_points")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.n, 5, "three raw and two minute points left");
}

/// The sampling worker (interval 1 s) writes a point for an app's container,
/// under the app, and one for the host with its load and disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_samples_an_apps_container_and_the_host() {
    use engine::metrics::{store, Subject};
    let t = TestEngine::new().await;
    let e = t.sampling_every_second();
    let app = uuid::Uuid::new_v4();
    let name = format!("{}-web", e.deploy.instance);
    let mut spec = ContainerSpec::new(&name, TEST_BASE_IMAGE);
    spec.cmd = Some(vec!["sleep".into(), "600".into()]);
    spec.labels.insert(LABEL_INSTANCE.into(), e.deploy.instance.clone());
    spec.labels.insert(engine::docker::LABEL_APP.into(), app.to_string());
    e.docker.create_container(&spec).await.unwrap();
    e.docker.start_container(&name).await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(engine::sampling::run(e.clone(), stop.clone()));
    let since = chrono::Utc::now() - chrono::Duration::minutes(1);
    let start = Instant::now();
    let (apps, host) = loop {
        let mut conn = e.db.get().await.unwrap();
        let apps = store::series(&mut conn, Subject::App(app), 1, since).await.unwrap();
        let host = store::series(&mut conn, Subject::Host, 1, since).await.unwrap();
        if !apps.is_empty() && !host.is_empty() {
            break (apps, host);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no points: {apps:?} {host:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    stop.cancel();
    let _ = worker.await;
    let _ = e.docker.remove_container(&name, false).await;
    assert!(
        apps[0].memory_bytes > 0 && apps[0].memory_limit >= apps[0].memory_bytes,
        "{apps:?}"
    );
    let h = &host[0];
    assert!(
        h.load1.is_some() && h.disk_total.unwrap() > h.disk_used.unwrap() && h.disk_used.unwrap() > 0,
        "{h:?}"
    );
    assert!(h.memory_limit > h.memory_bytes && h.memory_bytes > 0, "{h:?}");
    // And the file system under the engine's data root, as `df` sees it.
    let root = std::process::Command::new("docker")
        .env("DOCKER_HOST", e.docker.host())
        .args(["info", "--format", "{{.DockerRootDir}}"])
        .output()
        .unwrap();
    let root = String::from_utf8(root.stdout).unwrap().trim().to_owned();
    let df = std::process::Command::new("df")
        .args(["-B1", "--output=size,avail", &root])
        .output()
        .unwrap();
    let df = String::from_utf8(df.stdout).unwrap();
    let figures: Vec<i64> = df
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let (size, avail) = (figures[0], figures[1]);
    assert_eq!(h.docker_disk_total, Some(size), "{root}: {df}");
    let used = h.docker_disk_used.unwrap();
    assert!(
        (used - (size - avail)).abs() < size / 20,
        "used {used} against df's {}",
        size - avail
    );
}

/// An application's series is its organization's alone: another
/// organization's caller gets "not found", as for every ID-taking call; a
/// window outside the grammar names its field.
#[tokio::test]
async fn an_apps_series_is_its_organizations_alone() {
    use engine::metrics::{app_series, Window};
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (ada, env) = engine::testing::owner_with_environment(e).await;
    let app = engine::testing::create_app(
        e,
        &ada,
        env,
        "web",
        engine::testing::image_source(TEST_BASE_IMAGE),
        engine::testing::httpd_runtime(1),
    )
    .await;
    // The same user acting in another organization: queries are scoped by it.
    let stranger = engine::accounts::Caller {
        org_id: engine::ids::OrgId(uuid::Uuid::new_v4()),
        ..ada.clone()
    };
    assert!(app_series(e, &ada, app, Window::Hour).await.unwrap().points.is_empty());
    let err = app_series(e, &stranger, app, Window::Day).await.unwrap_err();
    assert!(matches!(err, engine::apps::AppError::NotFound), "{err:?}");
    assert_eq!(Window::parse("month").unwrap_err().field, "window");
}

/// An app's panel counts its container's restarts and OOM kills in the
/// window, as the reconciler records them, and no other app's.
#[tokio::test]
async fn an_apps_series_counts_its_restarts_and_oom_kills() {
    use engine::metrics::{app_series, Subject, Window};
    let t = TestEngine::new().await;
    let e = &t.engine;
    let (ada, env) = engine::testing::owner_with_environment(e).await;
    let source = || engine::testing::image_source(TEST_BASE_IMAGE);
    let app = engine::testing::create_app(e, &ada, env, "web", source(), engine::testing::httpd_runtime(1)).await;
    let other = engine::testing::create_app(e, &ada, env, "api", source(), engine::testing::httpd_runtime(1)).await;
    let before = app_series(e, &ada, app, Window::Hour).await.unwrap();
    assert_eq!((before.restarts, before.oom_kills), (0, 0));
    for event in ["restart", "restart", "oom"] {
        engine::alerts::record_event(e, Subject::App(app.0), event)
            .await
            .unwrap();
    }
    engine::alerts::record_event(e, Subject::App(other.0), "restart")
        .await
        .unwrap();
    let after = app_series(e, &ada, app, Window::Hour).await.unwrap();
    assert_eq!((after.restarts, after.oom_kills), (2, 1));
    // Each one listed, oldest first, for the marks on the charts.
    let kinds: Vec<&str> = after.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["restart", "restart", "oom"]);
    assert!(after.events.windows(2).all(|w| w[0].at <= w[1].at));
    let week = app_series(e, &ada, app, Window::Week).await.unwrap();
    assert_eq!((week.restarts, week.oom_kills), (2, 1));
    let theirs = app_series(e, &ada, other, Window::Hour).await.unwrap();
    assert_eq!((theirs.restarts, theirs.oom_kills), (1, 0));
    assert_eq!(theirs.events.len(), 1);
}

/// With two workers (as two replicas run), one samples at a time: one holds
/// the sampler's lock while the other waits; when the sampling one stops,
/// the other takes over and points keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_samples_at_a_time_and_another_takes_over() {
    use engine::metrics::{store, Subject};
    let t = TestEngine::new().await;
    let e = t.sampling_every_second();
    let key = engine::leader::lock_key("sampler", &e.deploy.instance);
    // How many backends hold the sampler's lock now.
    let holders = || async {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        use diesel_async::RunQueryDsl;
        let mut conn = e.db.get().await.unwrap();
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND ((classid::bigint << 32) | objid::bigint) = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(key)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
    };
    // The newest host point.
    let newest = || async {
        let mut conn = e.db.get().await.unwrap();
        let since = chrono::Utc::now() - chrono::Duration::minutes(1);
        store::series(&mut conn, Subject::Host, 1, since)
            .await
            .unwrap()
            .iter()
            .map(|p| p.at)
            .max()
    };
    let first = tokio_util::sync::CancellationToken::new();
    let a = tokio::spawn(engine::sampling::run(e.clone(), first.clone()));
    let start = Instant::now();
    while newest().await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the first worker did not sample"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let second = tokio_util::sync::CancellationToken::new();
    let b = tokio::spawn(engine::sampling::run(e.clone(), second.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holders().await, 1, "one worker holds the sampler's lock");

    first.cancel();
    a.await.unwrap();
    let stopped = chrono::Utc::now();
    // The other asks again within 10 s, and samples from then on.
    let start = Instant::now();
    loop {
        if newest()
            .await
            .is_some_and(|at| at > stopped + chrono::Duration::seconds(1))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(25),
            "no worker took over the sampling"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(holders().await, 1, "the second worker holds the lock now");
    second.cancel();
    b.await.unwrap();
    assert_eq!(holders().await, 0, "given up at shutdown");
}
