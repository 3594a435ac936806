//! The reconciler: what should run is running. One worker at a time across
//! every replica (a PostgreSQL advisory lock held on a connection of its own)
//! compares what should run (the managed Traefik, each app's live deployment,
//! each database service that was started) with what Docker reports, every few
//! seconds and whenever Docker says a container died or went away. It starts
//! what stopped, recreates what is missing (an app through a `repair`
//! deployment of its live image, so the history says so), and records each
//! repair with its reason. Repairs that keep failing back off, and what is down
//! is published for `/health` and the UI.

use crate::db::schema::{applications, database_services, deployments, repairs};
use crate::deploy::{self, Deployment};
use crate::docker::{ContainerInfo, ContainerSummary, LABEL_INSTANCE, LABEL_ROLE, LABEL_SERVICE};
use crate::error::StoreError;
use crate::ids::{AppId, OrgId};
use crate::leader::Leadership;
use crate::metrics::Subject;
use crate::Engine;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::{FutureExt, StreamExt};
use lifecycle::{DeploymentStatus as Status, Trigger};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often a pass runs when Docker says nothing.
const EVERY: Duration = Duration::from_secs(5);
/// The first wait before trying again to repair something that did not stay
/// repaired; doubled each time up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Running this long counts as repaired: the back-off starts over.
const STABLE: Duration = Duration::from_secs(60);

/// Runs until `shutdown`: waits to be the leader, then reconciles.
pub async fn run(engine: Engine, shutdown: CancellationToken) {
    let does = "reconciles Docker with what should run";
    crate::leader::run_as(&engine, "reconciler", does, &shutdown, |lease| {
        lead(&engine, &shutdown, lease)
    })
    .await;
}

async fn lead(engine: &Engine, shutdown: &CancellationToken, mut lease: Leadership) {
    let mut memory = Memory {
        since: Some(chrono::Utc::now()),
        ..Memory::default()
    };
    let mut events = engine.docker.events(&engine.deploy.instance);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            ev = events.next() => match ev {
                Some(Ok(e)) => {
                    memory.heard(&e);
                    // Only a container of this instance that stopped or went
                    // away asks for a pass now.
                    if !looks_now(&e) {
                        continue;
                    }
                    oom_counted(engine, &e).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    // One pass for the burst: a container's end says `die`,
                    // `stop` and `destroy` within milliseconds, and a rollout's
                    // retirement ends one per redeploy; a pass per event
                    // tripled the reconciler's Docker calls while apps deploy.
                    loop {
                        match events.next().now_or_never() {
                            Some(Some(Ok(more))) => {
                                memory.heard(&more);
                                oom_counted(engine, &more).await;
                            }
                            // Nothing more yet.
                            None => break,
                            // Ended: a new stream (this pass sees what was missed).
                            Some(Some(Err(_)) | None) => {
                                events = engine.docker.events(&engine.deploy.instance);
                                memory.missed_events = true;
                                break;
                            }
                        }
                    }
                }
                // The stream ended (Docker went away): poll until it is back.
                Some(Err(_)) | None => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    events = engine.docker.events(&engine.deploy.instance);
                    memory.missed_events = true;
                }
            },
        }
        if !lease.held().await {
            tracing::warn!("reconciler: lost the leadership lock (database connection gone)");
            return;
        }
        pass(engine, &mut memory).await;
    }
    lease.give_up().await;
}

/// Whether an event asks for a pass now: a container of this instance stopped
/// or went away.
fn looks_now(e: &crate::docker::ContainerEvent) -> bool {
    matches!(e.action.as_str(), "die" | "destroy" | "stop" | "oom")
}

/// The kernel killed a container for memory: counted for the alert rules
/// (Docker's restart policy may bring it back before a pass sees it down).
async fn oom_counted(engine: &Engine, e: &crate::docker::ContainerEvent) {
    if e.action != "oom" {
        return;
    }
    if let Some(subject) = subject_of(&e.labels) {
        if let Err(err) = crate::alerts::record_event(engine, subject, "oom").await {
            tracing::debug!(error = %err, "recording an OOM kill");
        }
    }
}

/// What the leader remembers between passes: back-offs per thing repaired.
#[derive(Default)]
struct Memory {
    backoff: HashMap<String, Backoff>,
    /// Docker was unreachable at the last pass.
    docker_was_down: bool,
    /// The proxy was seen running (before that, a missing one is being made
    /// for the first time, not repaired).
    proxy_seen: bool,
    /// Docker came back since the last pass: sweep what its crash left.
    just_back: bool,
    /// The address each app's route was last written with by this leader.
    routed: HashMap<Uuid, String>,
    passes: u32,
    /// The certificate watch's place in Traefik's log.
    certs: crate::apps::tls::Watch,
    /// Docker's restart count of each live container when last inspected.
    restarts: HashMap<String, i64>,
    /// When this leader began: a container made since has had every restart
    /// under its watch.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Containers Docker reported an event of since the last pass.
    touched: HashSet<String>,
    /// Subjects last seen killed (137) with no reason: judged again on the
    /// next pass, which Docker's `oom` event starts when it was the kernel.
    unexplained: HashSet<String>,
    /// Containers Docker reported an `oom` event for, by name, until a pass
    /// sees them up again or gone. Docker 20.10 sets a container's OOM flag
    /// only when the kernel's OOM notice reaches it before the exit; when it
    /// comes after, the flag stays unset and the event is all there is.
    oom_events: HashSet<String>,
    /// The event stream broke since the last pass: some may be missing.
    missed_events: bool,
}

/// What a pass may take as unchanged without inspecting it: a container
/// Docker lists as running, inspected in an earlier pass, and of which
/// Docker has reported no event since (a restart by its policy says `die`
/// and `start`). One list per pass instead of one inspect per live app and
/// started database. Every [`SWEEP_EVERY`]th pass, and any pass after the
/// event stream broke or Docker came back, inspects everything.
struct Steady {
    listed: Option<HashMap<String, ContainerSummary>>,
    touched: HashSet<String>,
}

impl Steady {
    async fn of(engine: &Engine, memory: &mut Memory, full: bool) -> Self {
        let touched = std::mem::take(&mut memory.touched);
        let full = std::mem::take(&mut memory.missed_events) || full;
        let listed = if full {
            None
        } else {
            let filter = [(LABEL_INSTANCE, Some(engine.deploy.instance.as_str()))];
            engine
                .docker
                .list_containers(&filter)
                .await
                .ok()
                .map(|l| l.into_iter().map(|c| (c.name.clone(), c)).collect())
        };
        Self { listed, touched }
    }

    /// The container, when it may be taken as it was at its last inspection.
    fn get(&self, memory: &Memory, name: &str) -> Option<&ContainerSummary> {
        self.listed
            .as_ref()?
            .get(name)
            .filter(|c| c.state == "running" && !self.touched.contains(name) && memory.restarts.contains_key(name))
    }
}

/// Leftovers are swept every this many passes (and whenever Docker returns).
const SWEEP_EVERY: u32 = 6;

struct Backoff {
    tries: u32,
    next: Instant,
    last: Instant,
}

impl Memory {
    /// Notes a container event: the container is to be inspected again, and
    /// an `oom` event is kept as its reason.
    fn heard(&mut self, e: &crate::docker::ContainerEvent) {
        self.touched.insert(e.container.clone());
        match e.action.as_str() {
            "oom" => {
                self.oom_events.insert(e.container.clone());
            }
            "destroy" => {
                self.oom_events.remove(&e.container);
            }
            _ => {}
        }
    }

    /// Inspects the container, its OOM flag set from a kept `oom` event (see
    /// [`Memory::with_oom_event`]): how every pass looks at what should run.
    async fn inspect(
        &mut self,
        engine: &Engine,
        name: &str,
    ) -> Result<Option<ContainerInfo>, crate::docker::DockerError> {
        Ok(self.with_oom_event(engine.docker.inspect_container(name).await?))
    }

    /// The container as inspected, with the OOM flag set when Docker reported
    /// an `oom` event for it that its flag missed (see `oom_events`). Forgets
    /// the event once the container is up again or gone.
    fn with_oom_event(&mut self, mut info: Option<ContainerInfo>) -> Option<ContainerInfo> {
        if let Some(c) = &mut info {
            if c.state.is_up() {
                self.oom_events.remove(&c.name);
            } else if self.oom_events.contains(&c.name) {
                c.state.oom_killed = true;
            }
        }
        info
    }

    /// True the first pass a subject is seen killed with no reason yet (its
    /// repair waits for the next pass); false once it waited or has one.
    fn wait_for_reason(&mut self, key: &str, c: Option<&ContainerInfo>) -> bool {
        if killed_unexplained(c) {
            self.unexplained.insert(key.to_owned())
        } else {
            self.unexplained.remove(key);
            false
        }
    }

    /// Whether `what` may be repaired now; counts the attempt when it may.
    fn may_try(&mut self, what: &str) -> Result<u32, Duration> {
        let now = Instant::now();
        let b = self.backoff.entry(what.to_owned()).or_insert(Backoff {
            tries: 0,
            next: now,
            last: now,
        });
        if now.duration_since(b.last) > STABLE + BACKOFF_MAX {
            b.tries = 0;
        }
        if now < b.next {
            return Err(b.next - now);
        }
        b.tries += 1;
        b.last = now;
        let wait = BACKOFF_MIN.saturating_mul(1 << (b.tries - 1).min(6)).min(BACKOFF_MAX);
        b.next = now + wait;
        Ok(b.tries)
    }

    /// `what` has been up for a while: forget its failures.
    fn settled(&mut self, what: &str) {
        if let Some(b) = self.backoff.get(what) {
            if b.last.elapsed() > STABLE {
                self.backoff.remove(what);
            }
        }
    }
}

/// One thing that should run and does not, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub app: Option<Uuid>,
    pub service: Option<Uuid>,
    pub text: String,
}

/// A pass's findings.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn system(&mut self, text: String) {
        self.0.push(Problem {
            app: None,
            service: None,
            text,
        });
    }
    fn app(&mut self, app: Uuid, text: String) {
        self.0.push(Problem {
            app: Some(app),
            service: None,
            text,
        });
    }
    fn service(&mut self, service: Uuid, text: String) {
        self.0.push(Problem {
            app: None,
            service: Some(service),
            text,
        });
    }
}

/// What is wrong right now, for `/health` and the UI: kept in Redis by the
/// leader (and expiring on its own if the leader stops).
pub const PROBLEMS_KEY: &str = "runtime:problems";
const PROBLEMS_TTL: u64 = 30;

/// One pass: Docker, the proxy, every app's live container, every started
/// database service. Never panics; each part's failure is logged and published.
async fn pass(engine: &Engine, memory: &mut Memory) {
    let mut problems = Problems::default();
    if let Err(e) = engine.docker.info().await {
        if !memory.docker_was_down {
            tracing::warn!(error = %e, "Docker is unreachable; waiting for it to come back");
        }
        memory.docker_was_down = true;
        problems.system(format!("Docker unreachable: {e}"));
        publish(engine, &problems).await;
        return;
    }
    if memory.docker_was_down {
        tracing::info!("Docker is back; reconciling");
        memory.docker_was_down = false;
        memory.just_back = true;
    }
    let back = std::mem::take(&mut memory.just_back);
    memory.passes = memory.passes.wrapping_add(1);
    let full = back || memory.passes % SWEEP_EVERY == 1;
    if full {
        if let Err(e) = sweep(engine).await {
            tracing::debug!(error = %e, "sweeping leftovers");
        }
    }
    let steady = Steady::of(engine, memory, full).await;
    proxy(engine, memory, &mut problems).await;
    if let Err(e) = apps(engine, memory, &steady, &mut problems).await {
        tracing::warn!(error = %e, "reconciling apps");
    }
    if let Err(e) = services(engine, memory, &steady, &mut problems).await {
        tracing::warn!(error = %e, "reconciling database services");
    }
    for app in crate::apps::tls::watch(engine, &mut memory.certs).await {
        crate::deploy::pipeline::restore_route(engine, app).await;
    }
    publish(engine, &problems).await;
}

async fn publish(engine: &Engine, problems: &Problems) {
    let Ok(mut conn) = engine.kv.conn().await else { return };
    let body = serde_json::to_string(&problems.0).expect("problems serialize");
    let _: Result<(), _> = redis::cmd("SET")
        .arg(engine.kv.key(PROBLEMS_KEY))
        .arg(body)
        .arg("EX")
        .arg(PROBLEMS_TTL)
        .query_async(&mut conn)
        .await;
}

/// What is wrong right now, as the reconciler last saw it (empty when nothing,
/// or when no reconciler has run for half a minute).
pub async fn problems(engine: &Engine) -> Vec<Problem> {
    let Ok(mut conn) = engine.kv.conn().await else {
        return Vec::new();
    };
    let raw: Option<String> = redis::cmd("GET")
        .arg(engine.kv.key(PROBLEMS_KEY))
        .query_async(&mut conn)
        .await
        .unwrap_or(None);
    raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default()
}

/// Records a repair (best effort: the repair itself matters more).
async fn record(
    engine: &Engine,
    org: Option<Uuid>,
    app: Option<Uuid>,
    service: Option<Uuid>,
    problem: &str,
    action: &str,
) {
    tracing::warn!(app.id = ?app, service.id = ?service, problem, action, "repair");
    if let Ok(mut conn) = engine.db.get().await {
        use diesel_async::AsyncConnection;
        // The history's row and the audit log's, together.
        let written = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                insert_repair(conn, org, app, service, problem, action).await
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "recording a repair");
        }
    }
    repaired(engine, app, service, problem).await;
}

/// A repair's rows: its history row and the worker's audit row (inside the
/// caller's transaction).
async fn insert_repair(
    conn: &mut diesel_async::AsyncPgConnection,
    org: Option<Uuid>,
    app: Option<Uuid>,
    service: Option<Uuid>,
    problem: &str,
    action: &str,
) -> Result<(), diesel::result::Error> {
    diesel::insert_into(repairs::table)
        .values((
            repairs::organization_id.eq(org),
            repairs::application_id.eq(app),
            repairs::service_id.eq(service),
            repairs::problem.eq(problem),
            repairs::action.eq(action),
        ))
        .execute(conn)
        .await?;
    let entry = crate::audit::Entry {
        org,
        actor: crate::audit::Actor::Worker,
        action: "repair".into(),
        target: app.map(|a| ("app", a)).or(service.map(|s| ("service", s))),
        outcome: crate::audit::Outcome::Ok,
        status: None,
        client: None,
    };
    crate::audit::insert(conn, &entry).await
}

/// What follows a recorded repair: it restarted or recreated the container,
/// so the alert rules count it; a database's pages hear when it is ready.
async fn repaired(engine: &Engine, app: Option<Uuid>, service: Option<Uuid>, problem: &str) {
    let subject = app.map(Subject::App).or(service.map(Subject::Service));
    if let Some(subject) = subject {
        let mut events = vec!["restart"];
        if problem == OOM_KILLED {
            events.push("oom");
        }
        for event in events {
            if let Err(e) = crate::alerts::record_event(engine, subject, event).await {
                tracing::debug!(error = %e, "recording a container event");
            }
        }
    }
    if let Some(s) = service {
        crate::services::announce_until_ready(engine, s);
    }
}

/// A container's end by the kernel's OOM killer, in words.
const OOM_KILLED: &str = "the container was OOM-killed";

/// Compares a live container's restart count with the last pass's: restarts
/// by Docker's own restart policy are recorded for the alert rules that count
/// them. A container first seen counts from zero if it was made while this
/// leader watched (a deploy's container can be OOM-killed and restarted before
/// any pass inspects it); an older one's count is its baseline (its restarts
/// were before this leader's time, perhaps long ago).
async fn restarts_seen(engine: &Engine, memory: &mut Memory, c: &ContainerInfo, subject: Subject) {
    let count = c.restart_count;
    let before = memory.restarts.insert(c.name.clone(), count);
    let new = matches!((c.created, memory.since), (Some(made), Some(since)) if made >= since);
    let from = before.unwrap_or(if new { 0 } else { count });
    for _ in from..count {
        if let Err(e) = crate::alerts::record_event(engine, subject, "restart").await {
            tracing::debug!(error = %e, "recording a restart");
        }
    }
}

/// What an event's container belongs to (an app or a database; not a drill).
fn subject_of(labels: &HashMap<String, String>) -> Option<Subject> {
    if labels.contains_key(crate::docker::LABEL_DRILL) {
        return None;
    }
    let id = |k: &str| labels.get(k).and_then(|v| v.parse::<Uuid>().ok());
    id(crate::docker::LABEL_APP)
        .map(Subject::App)
        .or_else(|| id(crate::docker::LABEL_SERVICE).map(Subject::Service))
}

/// A container Docker is removing (`docker rm -f` kills it first: until it
/// is gone it reads as exited with 137). Shown as such and left to the next
/// pass, which its `destroy` event starts: it is missing then, and said so;
/// starting it now would fail, and making its namesake again would collide
/// with it.
fn going(c: Option<&ContainerInfo>) -> bool {
    c.is_some_and(|c| c.state.status == "removing")
}

/// Killed (exit 137) with no OOM flag and no `oom` event yet. Docker's event
/// can come after the container's exit (then the flag stays unset: see
/// `Memory::oom_events`); a repair at once would record the kill without
/// its reason.
fn killed_unexplained(c: Option<&ContainerInfo>) -> bool {
    c.is_some_and(|c| !c.state.running && c.state.exit_code == Some(137) && !c.state.oom_killed)
}

/// Why a container is not up, in words.
fn why_down(c: Option<&ContainerInfo>) -> String {
    match c {
        None => "the container was missing".into(),
        Some(c) if c.state.oom_killed => OOM_KILLED.into(),
        Some(c) => match c.state.exit_code {
            Some(code) => format!("the container exited with code {code}"),
            None => format!("the container was {}", c.state.status),
        },
    }
}

async fn proxy(engine: &Engine, memory: &mut Memory, problems: &mut Problems) {
    if !engine.deploy.proxy.manage {
        return;
    }
    let name = &engine.deploy.proxy.container;
    // Its `oom` event names a kill Docker's flag missed, as for apps; but no
    // pass is spent waiting for a late one: while Traefik is down every app
    // is, so its repair goes first and its reason may say less.
    let current = match memory.inspect(engine, name).await {
        Ok(c) => c,
        Err(e) => {
            problems.system(format!("Traefik: {e}"));
            return;
        }
    };
    if going(current.as_ref()) {
        problems.system("Traefik: its container is being removed".to_owned());
        return;
    }
    if current.as_ref().is_some_and(|c| c.state.is_up()) {
        memory.proxy_seen = true;
        memory.settled("proxy");
        return;
    }
    if current.is_none() && !memory.proxy_seen {
        // Never seen: this is its first start (the deploy worker may be making
        // it too; whichever loses tries again next pass), not a repair.
        if crate::proxy::ensure(engine).await.is_ok() {
            crate::deploy::pipeline::sync_routes(engine).await;
        }
        return;
    }
    let problem = why_down(current.as_ref());
    match memory.may_try("proxy") {
        Ok(_) => {
            problems.system(format!("Traefik not running ({problem}): restarting"));
            match crate::proxy::ensure(engine).await {
                Ok(()) => {
                    crate::deploy::pipeline::sync_routes(engine).await;
                    record(
                        engine,
                        None,
                        None,
                        None,
                        &format!("Traefik: {problem}"),
                        "started it again",
                    )
                    .await;
                }
                Err(e) => problems.system(format!("Traefik could not be started: {e}")),
            }
        }
        Err(wait) => problems.system(format!(
            "Traefik not running ({problem}); next try in {} s",
            wait.as_secs()
        )),
    }
}

#[derive(QueryableByName)]
struct Window {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    since: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    until: i64,
}

/// Removes containers nothing accounts for: those of database services that
/// were deleted, and the legacy builder's step containers left by a build
/// Docker cut short (they carry no label: they are known by an untagged image
/// and a creation time inside a failed build of this installation). App
/// containers past their drain are the deploy reaper's
/// ([`crate::deploy::job::sweep_orphans`]).
async fn sweep(engine: &Engine) -> Result<(), StoreError> {
    let Ok(all) = engine.docker.list_containers(&[]).await else {
        return Ok(());
    };
    let mut conn = engine.db.get().await?;
    let services: std::collections::HashSet<Uuid> = database_services::table
        .select(database_services::id)
        .load::<Uuid>(&mut conn)
        .await?
        .into_iter()
        .collect();
    let windows: Vec<Window> = diesel::sql_query(
        "SELECT EXTRACT(EPOCH FROM building_at)::bigint AS since, EXTRACT(EPOCH FROM finished_at)::bigint AS until
         FROM deployments WHERE status = 'failed' AND building_at IS NOT NULL
           AND finished_at > now() - interval '1 day'",
    )
    .load(&mut conn)
    .await?;
    drop(conn);
    let ours = |c: &crate::docker::ContainerSummary| c.label(LABEL_INSTANCE) == Some(engine.deploy.instance.as_str());
    for c in &all {
        let deleted_service = ours(c)
            && c.label(LABEL_ROLE).is_none()
            && c.label(LABEL_SERVICE)
                .and_then(|s| s.parse::<Uuid>().ok())
                .is_some_and(|s| !services.contains(&s));
        let build_leftover = c.state != "running"
            && !c.labels.keys().any(|k| k.starts_with("berth."))
            && untagged(&c.image)
            && windows
                .iter()
                .any(|w| c.created >= w.since - 1 && c.created <= w.until + 1);
        if deleted_service || build_leftover {
            let what = if deleted_service {
                "a deleted database service's container"
            } else {
                "a build step's container left by a build Docker cut short"
            };
            tracing::info!(container = %c.name, "removing {what}");
            crate::docker::stop_and_remove(&*engine.docker, &c.name, Duration::from_secs(5)).await;
        }
    }
    Ok(())
}

/// An image listed by ID (`sha256:…` or bare hex), as step containers are.
fn untagged(image: &str) -> bool {
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Queryable)]
struct LiveApp {
    id: Uuid,
    org: Uuid,
    name: String,
    live: Uuid,
}

async fn apps(
    engine: &Engine,
    memory: &mut Memory,
    steady: &Steady,
    problems: &mut Problems,
) -> Result<(), StoreError> {
    let mut conn = engine.db.get().await?;
    let live: Vec<LiveApp> = applications::table
        .filter(applications::live_deployment_id.is_not_null())
        .select((
            applications::id,
            applications::organization_id,
            applications::name,
            applications::live_deployment_id.assume_not_null(),
        ))
        .load(&mut conn)
        .await?;
    // Apps with a deployment in flight are left to it (it may be replacing the
    // live container right now).
    let busy: Vec<Uuid> = deployments::table
        .filter(deployments::status.eq_any(Status::ACTIVE.iter().copied().chain([Status::Queued])))
        .select(deployments::application_id)
        .load(&mut conn)
        .await?;
    drop(conn);
    for app in live.into_iter().filter(|a| !busy.contains(&a.id)) {
        let container = crate::deploy::runtime::container_name(engine, &app.name, crate::ids::DeploymentId(app.live));
        let key = format!("app:{}", app.id);
        // Running as when last inspected, and routed to the address it has.
        if steady
            .get(memory, &container)
            .is_some_and(|c| c.addresses.values().next() == memory.routed.get(&app.id))
        {
            memory.settled(&key);
            continue;
        }
        let info = match memory.inspect(engine, &container).await {
            Ok(i) => i,
            Err(e) => {
                problems.app(app.id, format!("app {}: {e}", app.name));
                continue;
            }
        };
        if going(info.as_ref()) {
            problems.app(app.id, format!("app {}: its container is being removed", app.name));
            continue;
        }
        if let Some(c) = &info {
            restarts_seen(engine, memory, c, Subject::App(app.id)).await;
        }
        match &info {
            Some(c) if c.state.is_up() => {
                memory.settled(&key);
                // Routes name the container's address: one that came back
                // with another (or a route never written by this leader) is
                // routed again. Unchanged files are not rewritten.
                let address = c.addresses.values().next().cloned();
                if address.is_some() && memory.routed.get(&app.id) != address.as_ref() {
                    crate::deploy::pipeline::restore_route(engine, AppId(app.id)).await;
                    memory.routed.insert(app.id, address.unwrap_or_default());
                }
                continue;
            }
            // Docker's own restart policy is at it (a crash loop, backing off).
            Some(c) if c.state.restarting => {
                problems.app(
                    app.id,
                    format!(
                        "app {}: {}, restarted {} times; Docker keeps trying",
                        app.name,
                        why_down(Some(c)),
                        c.restart_count
                    ),
                );
                continue;
            }
            _ => {}
        }
        if memory.wait_for_reason(&key, info.as_ref()) {
            problems.app(app.id, format!("app {}: {}", app.name, why_down(info.as_ref())));
            continue;
        }
        let mut problem = why_down(info.as_ref());
        let tries = match memory.may_try(&key) {
            Ok(n) => n,
            Err(wait) => {
                problems.app(
                    app.id,
                    format!("app {}: {problem}; next repair in {} s", app.name, wait.as_secs()),
                );
                continue;
            }
        };
        // Stopped but there: start it again. Missing, or refusing to start:
        // run the live image again through the pipeline (health check, route).
        let started = match &info {
            Some(_) => engine.docker.start_container(&container).await.is_ok(),
            None => false,
        };
        // Removed between the inspection and the start: it is missing, and
        // the history says so rather than the exit code its removal gave it.
        if !started && info.is_some() && matches!(engine.docker.inspect_container(&container).await, Ok(None)) {
            problem = why_down(None);
        }
        if started {
            // It runs now (the next pass judges it as any other): no
            // "repairing" on the pages until that pass; the history keeps it.
            record(
                engine,
                Some(app.org),
                Some(app.id),
                None,
                &problem,
                "started the container again",
            )
            .await;
        } else {
            problems.app(
                app.id,
                format!("app {}: {problem}: repairing (attempt {tries})", app.name),
            );
            repair_deploy(engine, &app, &problem).await?;
        }
    }
    Ok(())
}

/// Queues a deployment of the live image (`trigger = repair`), its history
/// row and audit rows in the same transaction: a worker that dies between
/// them leaves both or neither.
async fn repair_deploy(engine: &Engine, app: &LiveApp, problem: &str) -> Result<(), StoreError> {
    use diesel_async::AsyncConnection;
    const ACTION: &str = "redeploying the live version (a repair deployment)";
    let mut conn = engine.db.get().await?;
    let queued = conn
        .transaction::<_, deploy::DeployError, _>(async |conn| {
            let live: Deployment = deployments::table
                .find(app.live)
                .select(Deployment::as_select())
                .first(conn)
                .await?;
            let req = deploy::Request {
                app: AppId(app.id),
                org: OrgId(app.org),
                trigger: Trigger::Repair,
                trigger_detail: Some(problem),
                rollback_of: Some(&live),
                delivery: None,
            };
            let accepted = deploy::insert_queued(conn, req).await?;
            insert_repair(conn, Some(app.org), Some(app.id), None, problem, ACTION).await?;
            Ok(accepted)
        })
        .await;
    // Back to the pool before what follows takes one.
    drop(conn);
    match queued {
        Ok(deploy::Accepted::Queued(id)) => {
            tracing::warn!(app.id = %app.id, problem, action = ACTION, "repair");
            deploy::queued_now(engine, AppId(app.id), Trigger::Repair, id).await;
            repaired(engine, Some(app.id), None, problem).await;
        }
        Ok(deploy::Accepted::Duplicate(_)) => {}
        Err(e) => tracing::warn!(error = %e, app.id = %app.id, "queueing a repair deployment"),
    }
    Ok(())
}

async fn services(
    engine: &Engine,
    memory: &mut Memory,
    steady: &Steady,
    problems: &mut Problems,
) -> Result<(), StoreError> {
    let started: Vec<(Uuid, String, bool)> = {
        let mut conn = engine.db.get().await?;
        database_services::table
            .filter(database_services::desired.eq("running"))
            .select((
                database_services::id,
                database_services::name,
                database_services::legacy_names,
            ))
            .load(&mut conn)
            .await?
    };
    for (id, name, legacy) in started {
        let key = format!("service:{id}");
        let container = crate::services::container::container_name(engine, id, &name, legacy);
        if steady.get(memory, &container).is_some() {
            memory.settled(&key);
            continue;
        }
        let svc = {
            let mut conn = engine.db.get().await?;
            match crate::services::load_any(engine, &mut conn, id).await {
                Ok(s) => s,
                Err(_) => continue,
            }
        };
        let boxed = svc.boxed(engine);
        let info = match memory.inspect(engine, &boxed.container).await {
            Ok(i) => i,
            Err(e) => {
                problems.service(id, format!("database {}: {e}", svc.row.name));
                continue;
            }
        };
        if going(info.as_ref()) {
            problems.service(id, format!("database {}: its container is being removed", svc.row.name));
            continue;
        }
        // A service made or changed a moment ago may still be pulling its image
        // or creating its container, or have made it and not yet started it:
        // that is the service worker's to finish, not the reconciler's to
        // repeat (a "repair" then would be a restart it never had).
        let settling = (chrono::Utc::now() - svc.row.created_at) < chrono::Duration::minutes(2);
        if settling && info.as_ref().is_none_or(|c| c.state.status == "created") {
            continue;
        }
        if let Some(c) = &info {
            restarts_seen(engine, memory, c, Subject::Service(id)).await;
        }
        match &info {
            // Made before the password moved into a file: made again once, so
            // the password leaves its command line (a restart of the database;
            // its data volume is kept).
            Some(c) if c.state.is_up() && crate::services::container::password_on_command_line(c) => {
                let problem = "its password was on the container's command line (shown by `docker inspect` and the host's process list)";
                if memory.may_try(&format!("{key}:command")).is_ok() {
                    let action = match crate::services::container::recreate(engine, &boxed).await {
                        Ok(()) => {
                            "made its container again with the password in a 0600 file on its volume (its data kept)"
                                .to_owned()
                        }
                        Err(e) => format!("could not make its container again: {e}"),
                    };
                    record(engine, Some(svc.row.organization_id), None, Some(id), problem, &action).await;
                }
                continue;
            }
            Some(c) if c.state.is_up() => {
                memory.settled(&key);
                continue;
            }
            Some(c) if c.state.restarting => {
                problems.service(
                    id,
                    format!(
                        "database {}: {}, restarted {} times; Docker keeps trying",
                        svc.row.name,
                        why_down(Some(c)),
                        c.restart_count
                    ),
                );
                continue;
            }
            _ => {}
        }
        if memory.wait_for_reason(&key, info.as_ref()) {
            problems.service(id, format!("database {}: {}", svc.row.name, why_down(info.as_ref())));
            continue;
        }
        let problem = why_down(info.as_ref());
        match memory.may_try(&key) {
            Ok(tries) => {
                let action = match crate::services::container::ensure_running(engine, &boxed).await {
                    Ok(()) if info.is_none() => "created its container again (its data volume kept)".to_owned(),
                    Ok(()) => "started the container again".to_owned(),
                    Err(e) => {
                        problems.service(
                            id,
                            format!("database {}: {problem}: repairing (attempt {tries})", svc.row.name),
                        );
                        format!("could not start it: {e}")
                    }
                };
                record(engine, Some(svc.row.organization_id), None, Some(id), &problem, &action).await;
            }
            Err(wait) => problems.service(
                id,
                format!(
                    "database {}: {problem}; next repair in {} s",
                    svc.row.name,
                    wait.as_secs()
                ),
            ),
        }
    }
    Ok(())
}

/// One repair, as the history shows it.
#[derive(Debug, Clone, Queryable)]
pub struct Repair {
    pub problem: String,
    pub action: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What the app or service page shows: what is wrong now and the latest
/// repairs (the caller has checked access; the history is scoped by the
/// caller's organization).
pub async fn of(
    engine: &Engine,
    org: OrgId,
    app: Option<Uuid>,
    service: Option<Uuid>,
) -> Result<(Option<String>, Vec<Repair>), StoreError> {
    let now = problems(engine)
        .await
        .into_iter()
        .find(|p| (app.is_some() && p.app == app) || (service.is_some() && p.service == service))
        .map(|p| p.text);
    Ok((now, history(engine, org, app, service).await?))
}

/// The latest repairs of an app or a service, newest first (the caller has
/// checked access; both IDs are scoped by the organization).
pub async fn history(
    engine: &Engine,
    org: OrgId,
    app: Option<Uuid>,
    service: Option<Uuid>,
) -> Result<Vec<Repair>, StoreError> {
    let mut conn = engine.db.get().await?;
    let mut q = repairs::table
        .filter(repairs::organization_id.eq(org.0))
        .order(repairs::created_at.desc())
        .limit(10)
        .select((repairs::problem, repairs::action, repairs::created_at))
        .into_boxed();
    if let Some(a) = app {
        q = q.filter(repairs::application_id.eq(a));
    }
    if let Some(s) = service {
        q = q.filter(repairs::service_id.eq(s));
    }
    Ok(q.load(&mut conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_being_removed_is_left_to_the_next_pass() {
        // What `docker inspect` says between `docker rm -f`'s kill and the
        // container's end (seen on the test engine: `removing 137 false`).
        let mut c = ContainerInfo::default();
        c.state.status = "removing".into();
        c.state.exit_code = Some(137);
        assert!(going(Some(&c)));
        c.state.status = "exited".into();
        assert!(!going(Some(&c)));
        assert_eq!(why_down(Some(&c)), "the container exited with code 137");
        assert!(!going(None));
        assert_eq!(why_down(None), "the container was missing");
    }

    #[test]
    fn a_kill_without_its_reason_waits_one_pass_for_dockers_oom_event() {
        let mut m = Memory::default();
        let mut c = ContainerInfo::default();
        c.state.status = "exited".into();
        c.state.exit_code = Some(137);
        assert!(m.wait_for_reason("app", Some(&c)), "the first pass waits");
        assert!(!m.wait_for_reason("app", Some(&c)), "the next one repairs");
        c.state.oom_killed = true;
        assert!(!m.wait_for_reason("other", Some(&c)), "a known reason does not wait");
        assert_eq!(why_down(Some(&c)), OOM_KILLED);
        c.state.oom_killed = false;
        c.state.exit_code = Some(1);
        assert!(!m.wait_for_reason("third", Some(&c)), "a crash has its reason");
        assert!(!m.wait_for_reason("gone", None));
    }

    #[test]
    fn an_oom_event_explains_a_kill_dockers_flag_missed() {
        // Docker 20.10 leaves the flag unset when the kernel's OOM notice
        // reaches it after the exit; its `oom` event still comes (seen in
        // make test: a repair recorded "exited with code 137").
        let event = |action: &str| crate::docker::ContainerEvent {
            action: action.into(),
            container: "berth-app".into(),
            labels: HashMap::new(),
        };
        let mut m = Memory::default();
        let mut c = ContainerInfo {
            name: "berth-app".into(),
            ..ContainerInfo::default()
        };
        c.state.status = "exited".into();
        c.state.exit_code = Some(137);
        let seen = m.with_oom_event(Some(c.clone())).unwrap();
        assert!(!seen.state.oom_killed, "no event, no reason");
        m.heard(&event("die"));
        m.heard(&event("oom"));
        let seen = m.with_oom_event(Some(c.clone())).unwrap();
        assert_eq!(why_down(Some(&seen)), OOM_KILLED);
        assert!(
            !m.wait_for_reason("app", Some(&seen)),
            "the event is the reason: no wait"
        );
        // Up again: that kill is over, and a later one needs its own event.
        c.state.running = true;
        m.with_oom_event(Some(c.clone()));
        c.state.running = false;
        assert!(!m.with_oom_event(Some(c.clone())).unwrap().state.oom_killed);
        // A container gone takes its event with it.
        m.heard(&event("oom"));
        m.heard(&event("destroy"));
        assert!(m.oom_events.is_empty());
    }

    #[test]
    fn repairs_back_off_and_start_over_once_stable() {
        let mut m = Memory::default();
        assert_eq!(m.may_try("x"), Ok(1));
        assert!(m.may_try("x").is_err(), "the second try waits");
        m.backoff.get_mut("x").unwrap().next = Instant::now();
        assert_eq!(m.may_try("x"), Ok(2));
        let wait = m.backoff["x"].next - Instant::now();
        assert!(wait > BACKOFF_MIN && wait <= BACKOFF_MIN * 2, "{wait:?}");
        m.backoff.get_mut("x").unwrap().last = Instant::now() - STABLE - Duration::from_secs(1);
        m.settled("x");
        assert!(!m.backoff.contains_key("x"));
        assert_eq!(
            crate::leader::lock_key("reconciler", "berth"),
            crate::leader::lock_key("reconciler", "berth")
        );
        assert_ne!(
            crate::leader::lock_key("reconciler", "berth"),
            crate::leader::lock_key("reconciler", "other")
        );
    }

    #[test]
    fn only_a_running_container_inspected_before_and_quiet_since_is_taken_as_steady() {
        let listed = |name: &str, state: &str| ContainerSummary {
            id: name.into(),
            name: name.into(),
            labels: HashMap::new(),
            state: state.into(),
            image: String::new(),
            created: 0,
            addresses: HashMap::new(),
        };
        let mut memory = Memory::default();
        for name in ["quiet", "touched", "exited"] {
            memory.restarts.insert(name.into(), 0);
        }
        let steady = Steady {
            listed: Some(
                [
                    listed("quiet", "running"),
                    listed("touched", "running"),
                    listed("exited", "exited"),
                    listed("new", "running"),
                ]
                .into_iter()
                .map(|c| (c.name.clone(), c))
                .collect(),
            ),
            touched: HashSet::from(["touched".to_owned()]),
        };
        assert!(steady.get(&memory, "quiet").is_some());
        assert!(steady.get(&memory, "touched").is_none(), "an event since: inspected");
        assert!(steady.get(&memory, "exited").is_none(), "not running: inspected");
        assert!(steady.get(&memory, "new").is_none(), "never inspected: inspected");
        assert!(steady.get(&memory, "absent").is_none(), "not listed: inspected");
        let full = Steady {
            listed: None,
            touched: HashSet::new(),
        };
        assert!(full.get(&memory, "quiet").is_none(), "a full pass inspects everything");
    }
}
