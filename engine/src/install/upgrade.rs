//! `berth upgrade --image <new>`: a new Berth beside the old one, the
//! dashboard's route moved to it once it is healthy, the old one stopped last.
//!
//! The steps, in order, each named in the error when it fails:
//! 1. *reading the installation*: `install/options.json`, the running Berth;
//!    leftovers of an interrupted upgrade are removed (the route is put back
//!    on the running Berth first).
//! 2. *the new image*: present or pulled.
//! 3. *backing up Berth's database*: `berth admin backup-database` in the
//!    running Berth, to a file under `<data dir>/backups` (and to S3 when an
//!    own-database schedule names a destination).
//! 4. *running migrations*: `berth migrate` from the new image in a one-off
//!    container. The old Berth keeps serving on the migrated schema, which is
//!    safe because migrations within one upgrade are additive
//!    (docs/decisions/0006-side-by-side-migrations.md).
//! 5. *starting the new Berth* (`<instance>-next`, the other slot, on every
//!    network the old one is on) and 6. *waiting for it to be healthy*.
//! 7. *moving the dashboard's route* to the new slot, confirmed through
//!    Traefik by the route's header.
//! 8. *stopping the old Berth* (SIGTERM: it finishes what it serves) and
//!    9. *renaming* the new one to `<instance>`.
//!
//! A failure up to step 7 undoes what was done: the route back, the new
//! container removed, and the database restored from the backup when a
//! migration had changed its schema (writes made meanwhile by the old Berth
//! are lost with it: the window is the seconds between the backup and the
//! failure). The old Berth serves throughout.

use super::*;

#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub data_dir: PathBuf,
    pub image: String,
    /// How long the new Berth may take to report healthy.
    pub health_timeout: Duration,
    /// How long the old Berth gets to finish what it serves before SIGKILL.
    pub drain: Duration,
}

/// What an upgrade did.
#[derive(Debug, Clone)]
pub struct Upgraded {
    pub from: String,
    pub to: String,
    pub backup: PathBuf,
    /// Whether the migrations changed the schema.
    pub migrated: bool,
}

/// What has been done so far, for undoing it.
struct Progress {
    old_slot: Slot,
    backup: Option<PathBuf>,
    schema_before: Option<String>,
    next_made: bool,
    route_moved: bool,
    /// The new Berth serves: a later failure is reported, nothing undone.
    committed: bool,
}

const BERTH: &str = "/usr/local/bin/berth";

/// Runs `berth <args>` in a container; its standard output, or what it said
/// on failure.
async fn berth_in(docker: &dyn DockerApi, container: &str, args: &[&str]) -> Result<String, String> {
    let argv: Vec<&str> = std::iter::once(BERTH).chain(args.iter().copied()).collect();
    let out = docker
        .exec(container, &docker::Exec::argv(argv), None, None)
        .await
        .map_err(|e| e.to_string())?;
    if out.exit_code != 0 {
        let said = out.stderr_tail.trim();
        return Err(if said.is_empty() {
            format!("exit code {}", out.exit_code)
        } else {
            said.to_owned()
        });
    }
    Ok(out.stdout.trim().to_owned())
}

/// A failure of `step`, for `?`.
fn at<E: std::fmt::Display>(step: &str) -> impl Fn(E) -> (String, String) + '_ {
    move |e| (step.to_owned(), e.to_string())
}

/// The last lines a container wrote.
async fn last_lines(docker: &dyn DockerApi, container: &str) -> String {
    use futures::StreamExt;
    let mut logs = docker.logs(
        container,
        docker::LogOptions {
            follow: false,
            tail: Some(8),
            since: None,
        },
    );
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.extend_from_slice(&chunk.bytes);
    }
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Waits until Traefik answers the dashboard's `/health` through `upstream`.
async fn wait_route(o: &InstallOptions, upstream: &str, limit: Duration) -> Result<(), String> {
    let want = crate::proxy::dashboard_token(upstream);
    let start = std::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match crate::proxy::dashboard_route_token(o.entry(), &o.host, o.resolver().is_some()).await {
            Ok(Some(t)) if t == want => return Ok(()),
            Ok(t) => {
                last = format!(
                    "Traefik still answers through {}",
                    t.unwrap_or_else(|| "no route".into())
                )
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not routed within {} s: {last}", limit.as_secs()))
}

/// Upgrades the installation under `u.data_dir` to `u.image`; `say` hears
/// each step as it starts.
pub async fn upgrade(
    docker: &dyn DockerApi,
    u: &UpgradeOptions,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Upgraded, InstallError> {
    let o = InstallOptions::load(&u.data_dir)?;
    let step = "reading the installation";
    say(step);
    let old = docker
        .inspect_container(&o.instance)
        .await
        .map_err(|e| step_err(step, e))?
        .filter(|c| c.labels.contains_key(LABEL_INSTALL) && c.state.is_up())
        .ok_or_else(|| step_err(step, format!("Berth's container {} is not running", o.instance)))?;
    let (pg_password, redis_password) = read_secrets(&o)?;
    let mut p = Progress {
        old_slot: Slot::of(&old),
        backup: None,
        schema_before: None,
        next_made: false,
        route_moved: false,
        committed: false,
    };
    let next = format!("{}-next", o.instance);
    let migrator = format!("{}-migrate", o.instance);
    // An earlier upgrade cut short: the route back to the running Berth, its
    // leftovers gone.
    o.write_route(p.old_slot).map_err(|e| step_err(step, e))?;
    for leftover in [&next, &migrator] {
        if docker
            .inspect_container(leftover)
            .await
            .map_err(|e| step_err(step, e))?
            .is_some()
        {
            wait_route(&o, &o.upstream(p.old_slot), Duration::from_secs(30))
                .await
                .map_err(|e| step_err(step, e))?;
            docker
                .remove_container(leftover, false)
                .await
                .map_err(|e| step_err(step, e))?;
        }
    }

    let result = steps(
        docker,
        u,
        &o,
        &old,
        &pg_password,
        &redis_password,
        &next,
        &migrator,
        &mut p,
        say,
    )
    .await;
    match result {
        Ok(done) => Ok(done),
        Err((step, reason)) if p.committed => Err(step_err(&step, reason)),
        Err((step, reason)) => {
            let undone = undo(docker, &o, &old, &next, &migrator, &p).await;
            Err(step_err(&step, format!("{reason}; {undone}")))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn steps(
    docker: &dyn DockerApi,
    u: &UpgradeOptions,
    o: &InstallOptions,
    old: &docker::ContainerInfo,
    pg_password: &str,
    redis_password: &str,
    next: &str,
    migrator: &str,
    p: &mut Progress,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<Upgraded, (String, String)> {
    let step = "pulling the new image";
    say(step);
    docker::ensure_image(docker, &u.image, None, |_| {})
        .await
        .map_err(at(step))?;

    let step = "backing up Berth's database";
    say(step);
    let dir = o.data_dir.join("backups");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| std::os::unix::fs::chown(&dir, Some(BERTH_UID), Some(BERTH_UID)))
            .map_err(|e| at(step)(format!("{}: {e}", dir.display())))?;
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let file = dir.join(format!("upgrade-{stamp}.pgdump"));
    let file_s = file.display().to_string();
    let said = berth_in(docker, &old.name, &["admin", "backup-database", "--file", &file_s])
        .await
        .map_err(at(step))?;
    p.backup = Some(file.clone());
    if !said.is_empty() {
        say(&said);
    }
    let schema = berth_in(docker, &old.name, &["admin", "schema-state"])
        .await
        .map_err(at(step))?;
    p.schema_before = Some(schema.clone());

    let new_slot = p.old_slot.other();
    let mut target = o.clone();
    target.image = u.image.clone();
    let gid = socket_gid(&o.docker_socket);
    let spec = specs(&target, pg_password, redis_password, gid, new_slot).berth;

    let step = "running migrations";
    say(step);
    let mut once = spec.clone();
    once.name = migrator.to_owned();
    once.cmd = Some(vec!["migrate".into()]);
    once.restart = Restart::No;
    once.healthcheck = None;
    once.network = Network::Bridge {
        name: o.instance.clone(),
        aliases: Vec::new(),
    };
    once.labels = o.labels();
    docker.create_container(&once).await.map_err(at(step))?;
    docker.start_container(migrator).await.map_err(at(step))?;
    let code = docker.wait_container(migrator).await.map_err(at(step))?;
    let said = last_lines(docker, migrator).await;
    let _ = docker.remove_container(migrator, false).await;
    if code != 0 {
        return Err(at(step)(format!("exit code {code}: {said}")));
    }
    let after = berth_in(docker, &old.name, &["admin", "schema-state"])
        .await
        .map_err(at(step))?;
    let migrated = after != schema;

    let step = "starting the new Berth";
    say(step);
    let mut beside = spec;
    beside.name = next.to_owned();
    docker.create_container(&beside).await.map_err(at(step))?;
    p.next_made = true;
    // The organizations' networks too: its worker health-checks their apps.
    for network in old.addresses.keys().filter(|n| **n != o.instance) {
        docker.connect_network(network, next, &[]).await.map_err(at(step))?;
    }
    docker.start_container(next).await.map_err(at(step))?;

    let step = "waiting for the new Berth to be healthy";
    say(step);
    if let Err(e) = wait_healthy(docker, next, u.health_timeout).await {
        let said = last_lines(docker, next).await;
        return Err(at(step)(format!("{e}; it said: {said}")));
    }

    let step = "moving the dashboard's route";
    say(step);
    let upstream = o.upstream(new_slot);
    p.route_moved = true;
    o.write_route(new_slot).map_err(at(step))?;
    wait_route(o, &upstream, Duration::from_secs(30))
        .await
        .map_err(at(step))?;
    // From here the new Berth serves: nothing is undone.
    p.committed = true;

    let step = "stopping the old Berth";
    say(step);
    docker.stop_container(&old.name, u.drain).await.map_err(|e| {
        (
            step.to_owned(),
            format!("{e} (the new Berth serves; remove {} by hand)", old.name),
        )
    })?;
    docker.remove_container(&old.name, false).await.map_err(|e| {
        (
            step.to_owned(),
            format!("{e} (the new Berth serves; remove {} by hand)", old.name),
        )
    })?;

    let step = "renaming the new Berth";
    say(step);
    docker
        .rename_container(next, &o.instance)
        .await
        .map_err(|e| (step.to_owned(), format!("{e} (it serves as {next})")))?;
    target
        .save()
        .map_err(|e| (step.to_owned(), format!("saving install/options.json: {e}")))?;
    Ok(Upgraded {
        from: old.image.clone(),
        to: u.image.clone(),
        backup: file,
        migrated,
    })
}

/// Undoes what a failed upgrade did before the old Berth stopped; says what.
async fn undo(
    docker: &dyn DockerApi,
    o: &InstallOptions,
    old: &docker::ContainerInfo,
    next: &str,
    migrator: &str,
    p: &Progress,
) -> String {
    let mut said = Vec::new();
    if p.route_moved {
        let upstream = o.upstream(p.old_slot);
        let back = o.write_route(p.old_slot).map_err(|e| e.to_string());
        match back {
            Ok(_) => match wait_route(o, &upstream, Duration::from_secs(30)).await {
                Ok(()) => said.push("the dashboard's route is back on the old Berth".to_owned()),
                Err(e) => said.push(format!("the dashboard's route was written back but {e}")),
            },
            Err(e) => said.push(format!("the dashboard's route could not be written back: {e}")),
        }
    }
    let _ = docker.remove_container(migrator, false).await;
    if p.next_made {
        match docker.remove_container(next, false).await {
            Ok(()) => said.push(format!("{next} removed")),
            Err(e) => said.push(format!("{next} could not be removed: {e}")),
        }
    }
    if let (Some(before), Some(backup)) = (&p.schema_before, &p.backup) {
        let now = berth_in(docker, &old.name, &["admin", "schema-state"]).await;
        if now.as_ref() != Ok(before) {
            let file = backup.display().to_string();
            match berth_in(docker, &old.name, &["admin", "restore-database", "--file", &file]).await {
                Ok(_) => said.push(format!("the database was restored from {file}")),
                Err(e) => said.push(format!("restoring the database from {file} failed: {e}")),
            }
        } else {
            said.push("the database schema was not changed".to_owned());
        }
    }
    said.push(format!("{} ({}) keeps serving", o.instance, old.image));
    said.join("; ")
}
