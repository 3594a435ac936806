//! Wire types: what server functions return to the browser. Plain data, shared
//! by both builds; the engine's rows never cross the wire directly.

pub use lifecycle::{
    AlertMetric, BackupTrigger, ChannelKind, DeliveryStatus, DeploymentStatus, DrillStatus, IncidentState, JobStatus,
    Lifecycle, NotifyEvent, ServiceState, Trigger,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
}

/// The signed-in user and where they are working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub name: String,
    pub email: String,
    pub org_id: Uuid,
    pub org_name: String,
    pub role: String,
    /// Holds the powers over the host (bind mounts, public ports, Berth's own
    /// database, instance settings).
    pub instance_admin: bool,
    /// The instance lets this user create organizations.
    pub can_create_org: bool,
    pub orgs: Vec<OrgView>,
}

impl Me {
    pub fn can_manage(&self) -> bool {
        self.role == "owner" || self.role == "admin"
    }
}

/// What instance administrators see and change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InstanceView {
    /// `admins` or `anyone`: who may create organizations.
    pub org_creation: String,
    pub users: Vec<InstanceUserView>,
    /// Set by the operator in the environment (read-only here).
    pub bind_roots: Vec<String>,
    pub allow_private_targets: bool,
    pub allow_local_images: bool,
    pub acme: AcmeView,
}

/// The certificate settings as their form shows them (DNS credentials by name only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AcmeView {
    /// `production`, `staging`, or a directory URL.
    pub directory: String,
    pub email: String,
    pub dns_provider: String,
    pub dns_credentials: String,
    pub dns_resolvers: String,
    pub dns_skip_propagation: bool,
    pub http3: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceUserView {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub instance_admin: bool,
}

/// Where the visitor stands before any page renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionState {
    /// No owner exists yet: onboarding is open.
    Onboarding,
    SignedOut,
    SignedIn(Me),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub environments: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentView {
    pub id: Uuid,
    pub name: String,
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectDetail {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub environments: Vec<EnvironmentView>,
    pub may: Powers,
}

/// What the signed-in user may do in a project (its project role, or their
/// organization role): the pages offer only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Powers {
    pub deploy: bool,
    pub manage: bool,
    pub delete: bool,
}

#[cfg(feature = "ssr")]
impl From<engine::access::Powers> for Powers {
    fn from(p: engine::access::Powers) -> Self {
        Powers {
            deploy: p.deploy,
            manage: p.manage,
            delete: p.delete,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub role: String,
    /// Limited to chosen projects (plain members only).
    pub limited: bool,
    /// With `limited`: each granted project and the role there.
    pub grants: Vec<GrantView>,
}

/// A limited member's role in one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub project_id: Uuid,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteView {
    pub id: Uuid,
    pub role: String,
    pub expires_at: String,
    pub created_by: String,
}

/// The caller's two-factor sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    pub recovery_left: i64,
    pub org_requires: bool,
}

/// A set-up in progress: the secret, its `otpauth://` URI and QR code (SVG).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwoFactorEnrolment {
    pub secret: String,
    pub uri: String,
    pub qr_svg: String,
}

/// A row of the audit log as Settings shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub id: Uuid,
    pub at: String,
    pub who: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub client: String,
}

/// An API key as Settings lists it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// `berth_<prefix>_…`: enough to recognise a key.
    pub prefix: String,
    pub role: String,
    pub instance: bool,
    pub owner: String,
    pub own: bool,
    pub created_at: String,
    /// `never`, a date, or `expired <date>`.
    pub expires: String,
    /// `active` or `revoked <date>`.
    pub state: String,
    /// `never`, or when and from which address.
    pub last_used: String,
    /// Limited to these projects (`None`: every project its owner reaches).
    pub projects: Option<Vec<String>>,
}

/// A key just made: `key` is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    pub id: Uuid,
    pub key: String,
}

/// A freshly made invite: the link is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInvite {
    pub id: Uuid,
    pub link: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitePreview {
    pub org_name: String,
    pub role: String,
    pub signed_in: bool,
}

/// Backend state the UI warns about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// `None` when Docker answers; otherwise what went wrong.
    pub docker_error: Option<String>,
    pub docker_host: String,
    /// For instance administrators: everything that should run and does not.
    pub problems: Vec<String>,
    /// The organization requires two-factor sign-in and the caller has not
    /// set it up (everything but enrolment is refused until then).
    #[serde(default)]
    pub needs_second_factor: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSummaryView {
    pub id: Uuid,
    pub name: String,
    pub environment_id: Uuid,
    /// `git` or `image`.
    pub source: String,
    /// The latest deployment's status, if any.
    pub status: Option<DeploymentStatus>,
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub id: Uuid,
    pub host: String,
    pub path_prefix: String,
    pub strip_prefix: bool,
    pub port: Option<i32>,
    pub https: bool,
    pub generated: bool,
    /// Where it is served: scheme, host, the proxy's port when not the
    /// scheme's default (`BERTH_HTTP_PORT` / `BERTH_HTTPS_PORT`), path prefix.
    pub url: String,
    /// The certificate, for an HTTPS domain.
    pub cert: Option<CertView>,
    pub options: DomainOptionsView,
}

/// An HTTPS domain's certificate as Berth last saw Traefik serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertView {
    /// `http`, `tls`, `dns` or `custom`.
    pub source: String,
    /// `pending`, `issued` or `failed`.
    pub status: String,
    pub issuer: Option<String>,
    pub not_after: Option<String>,
    /// Fewer than 21 days left.
    pub expiring: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the CA is asked again (a backoff), if later than now.
    pub retry_at: Option<String>,
}

/// A domain's proxy options as its settings form shows them (basic-auth
/// users by name only: passwords never leave the server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DomainOptionsView {
    pub redirect_https: bool,
    pub hsts_max_age: String,
    pub hsts_subdomains: bool,
    pub www: String,
    pub basic_auth_users: String,
    pub headers: String,
    pub compress: bool,
    pub rate_average: String,
    pub rate_burst: String,
}

/// An application's settings, as the forms show them (secrets never included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AppView {
    pub id: Uuid,
    pub name: String,
    pub may: Powers,
    pub project_id: Uuid,
    pub project_name: String,
    pub environment_name: String,
    pub source: String,
    pub image: String,
    pub registry_user: String,
    pub has_secret: bool,
    /// An ssh host key was pinned at the first clone.
    pub host_key_pinned: bool,
    pub repository: String,
    pub branch: String,
    pub subdir: String,
    pub build: String,
    pub dockerfile: String,
    pub context: String,
    pub target: String,
    pub build_args: String,
    pub static_dir: String,
    pub port: u16,
    pub command: String,
    pub cpu_millis: String,
    pub memory_mb: String,
    pub restart: String,
    pub health: String,
    pub health_path: String,
    pub health_command: String,
    pub health_interval_ms: u64,
    pub health_timeout_ms: u64,
    pub health_retries: u32,
    pub health_start_period_secs: u64,
    pub volumes: String,
    pub drain_secs: u64,
    pub domains: Vec<DomainView>,
    pub env_names: Vec<String>,
    pub live_deployment: Option<Uuid>,
    /// The newest deployment: the one whose log the Deployments tab opens on.
    pub latest_deployment: Option<Uuid>,
    /// What is wrong with the running app now, as the reconciler sees it.
    pub problem: Option<String>,
    pub repairs: Vec<RepairView>,
}

/// A repair the reconciler made: what it found and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RepairView {
    pub problem: String,
    pub action: String,
    /// RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentView {
    pub id: Uuid,
    pub status: DeploymentStatus,
    pub reason: Option<String>,
    pub trigger: Trigger,
    /// For webhook deploys: which webhook.
    pub trigger_detail: Option<String>,
    pub commit: Option<String>,
    pub created_at: String,
    pub duration_secs: Option<i64>,
    /// The deployment serving traffic now.
    pub live: bool,
    pub can_rollback: bool,
    /// A rollback: the deployment whose image it runs again.
    pub rollback_of: Option<Uuid>,
    /// When it stopped serving, and which deployment replaced it.
    pub superseded: Option<(String, Option<Uuid>)>,
}

impl DeploymentView {
    pub fn finished(&self) -> bool {
        self.status.is_finished()
    }
}

/// A moment as every page shows it: `2026-12-04 13:45:11 UTC` (dates that
/// need no seconds, such as expiries, leave them out in the same form).
#[cfg(feature = "ssr")]
pub(crate) fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A resource panel's figures over its window: the points, and for an app or
/// a database how often its container was restarted or OOM-killed then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsView {
    pub points: Vec<MetricPoint>,
    /// Apps and database services only (the machine and Traefik: none).
    pub restarts: Option<i64>,
    pub oom_kills: Option<i64>,
    /// Those restarts and OOM kills (the window's last 200), oldest first,
    /// marked on the charts.
    #[serde(default)]
    pub marks: Vec<MetricMark>,
}

/// A restart or an OOM kill, marked on a resource chart at its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMark {
    /// Seconds since the UNIX epoch.
    pub at: i64,
    /// OOM-killed (otherwise restarted).
    pub oom: bool,
    /// The time for people (UTC).
    pub when: String,
}

#[cfg(feature = "ssr")]
impl From<engine::metrics::Series> for MetricsView {
    fn from(s: engine::metrics::Series) -> Self {
        Self {
            points: s.points.into_iter().map(MetricPoint::from).collect(),
            restarts: Some(s.restarts),
            oom_kills: Some(s.oom_kills),
            marks: s
                .events
                .into_iter()
                .map(|e| MetricMark {
                    at: e.at.timestamp(),
                    oom: e.event == "oom",
                    when: stamp(e.at),
                })
                .collect(),
        }
    }
}

/// One point of a resource chart (`engine::metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Seconds since the UNIX epoch.
    pub at: i64,
    /// Percent of one core.
    pub cpu: f32,
    pub memory: i64,
    pub limit: i64,
    /// Bytes received and sent during the point.
    pub rx: i64,
    pub tx: i64,
    /// The machine only: the disk under Berth's data directory, and the load.
    #[serde(default)]
    pub disk: Option<i64>,
    #[serde(default)]
    pub disk_total: Option<i64>,
    /// The machine only: the file system under Docker's data root.
    #[serde(default)]
    pub docker_disk: Option<i64>,
    #[serde(default)]
    pub docker_disk_total: Option<i64>,
    #[serde(default)]
    pub load: Option<f32>,
}

#[cfg(feature = "ssr")]
impl From<engine::metrics::store::Point> for MetricPoint {
    fn from(p: engine::metrics::store::Point) -> Self {
        Self {
            at: p.at.timestamp(),
            cpu: p.cpu_percent,
            memory: p.memory_bytes,
            limit: p.memory_limit,
            rx: p.rx_bytes,
            tx: p.tx_bytes,
            disk: p.disk_used,
            disk_total: p.disk_total,
            docker_disk: p.docker_disk_used,
            docker_disk_total: p.docker_disk_total,
            load: p.load1,
        }
    }
}

/// A page of an application's deployment history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DeploymentPage {
    pub deployments: Vec<DeploymentView>,
    /// Pass back to get the next (older) page; `None` on the last one.
    pub next: Option<String>,
}

/// Webhook settings for GitHub and CI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HooksView {
    pub github_url: String,
    pub github_secret: String,
    pub deploy_url: String,
}

/// A database service in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummaryView {
    pub id: Uuid,
    pub name: String,
    /// `postgres`, `mysql`, `mariadb`, `mongo` or `redis`.
    pub engine: String,
    pub environment_id: Uuid,
    pub state: ServiceState,
}

/// A database service's page (the password masked in both connection strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceView {
    pub id: Uuid,
    pub name: String,
    pub engine: String,
    pub engine_label: String,
    pub may: Powers,
    pub project_id: Uuid,
    pub project_name: String,
    pub environment_name: String,
    pub image: String,
    pub database: Option<String>,
    pub user: Option<String>,
    pub volume: String,
    pub cpu_millis: Option<i32>,
    pub memory_mb: Option<i32>,
    pub external_bind: Option<String>,
    pub external_port: Option<i32>,
    /// The project's applications (ID, name), to link the service to.
    pub project_apps: Vec<(Uuid, String)>,
    /// Redis: "AOF and RDB snapshots" or "RDB snapshots"; none for the others.
    pub persistence: Option<String>,
    pub state: ServiceState,
    /// The engine's readiness probe (pg_isready, PING ...), asked while running.
    pub ready: Option<bool>,
    pub internal_url: String,
    pub external_url: Option<String>,
    pub last_error: Option<String>,
    pub problem: Option<String>,
    pub repairs: Vec<RepairView>,
}

/// The password and connection strings, on an explicit request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealedView {
    pub password: String,
    /// MySQL/MariaDB services made with a root password of their own.
    pub root_password: Option<String>,
    pub internal_url: String,
    pub external_url: Option<String>,
}

/// An S3 destination (never its secret key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationView {
    pub id: Uuid,
    pub name: String,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub prefix: String,
    pub access_key: String,
    pub path_style: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub id: Uuid,
    pub destination_id: Uuid,
    pub trigger: BackupTrigger,
    pub status: JobStatus,
    pub key: Option<String>,
    pub size_bytes: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub duration_secs: Option<i64>,
    /// Deleted from the bucket by retention.
    pub pruned: bool,
    pub drill_status: Option<DrillStatus>,
    pub drill_detail: Option<String>,
    pub drill_at: Option<String>,
}

impl BackupView {
    pub fn restorable(&self) -> bool {
        self.status == JobStatus::Succeeded && !self.pruned && self.key.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreView {
    pub id: Uuid,
    pub backup_id: Uuid,
    pub status: JobStatus,
    /// Compressed bytes read so far, of `total` (the backup object's size).
    pub bytes: i64,
    pub total: i64,
    pub error: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub id: Uuid,
    pub destination_id: Uuid,
    pub cron: String,
    pub timezone: String,
    pub keep_last: i32,
    pub drill: bool,
    pub next_runs: Vec<String>,
    /// The newest slot taken, when, and how many slots before it were missed.
    pub last_slot: Option<String>,
    pub last_taken: Option<String>,
    pub last_missed: i32,
}

/// Everything the Backups tab shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackupsView {
    pub destinations: Vec<DestinationView>,
    pub backups: Vec<BackupView>,
    pub restores: Vec<RestoreView>,
    pub schedules: Vec<ScheduleView>,
}

impl BackupsView {
    /// Work is queued or running: its status events follow.
    pub fn busy(&self) -> bool {
        self.backups
            .iter()
            .any(|b| b.status.in_progress() || b.drill_status.is_some_and(DrillStatus::in_progress))
            || self.restores.iter().any(|r| r.status.in_progress())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketObjectView {
    pub key: String,
    pub size: u64,
    pub last_modified: String,
}

/// A notification channel as its page shows it (never its URL or secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub id: Uuid,
    pub name: String,
    pub kind: ChannelKind,
    /// The receiver's host, the chat, or the addresses.
    pub summary: String,
    pub events: Vec<NotifyEvent>,
    /// What the edit form shows, for admins and owners only; secrets are
    /// never part of it (left blank, they are kept).
    pub editable: Option<ChannelFields>,
}

/// A channel's settings without their secrets, as its edit form fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFields {
    pub chat_id: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: String,
    pub smtp_username: String,
    pub email_from: String,
    pub email_to: String,
}

#[cfg(feature = "ssr")]
impl From<engine::notify::Editable> for ChannelFields {
    fn from(f: engine::notify::Editable) -> Self {
        Self {
            chat_id: f.chat_id,
            smtp_host: f.smtp_host,
            smtp_port: f.smtp_port,
            smtp_security: f.smtp_security,
            smtp_username: f.smtp_username,
            email_from: f.email_from,
            email_to: f.email_to,
        }
    }
}

/// One notification delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub id: Uuid,
    pub channel: String,
    pub event: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub error: Option<String>,
    pub at: String,
}

/// An alert rule: a figure above a threshold for a while, told to channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub id: Uuid,
    pub name: String,
    pub metric: AlertMetric,
    pub threshold: f32,
    pub for_secs: i32,
    /// The names of the channels told.
    pub channels: Vec<String>,
    /// The same channels' IDs, for the rule's edit form.
    pub channel_ids: Vec<Uuid>,
}

/// An incident of a rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: Uuid,
    pub rule: String,
    pub subject: String,
    pub state: IncidentState,
    pub value: f32,
    pub started_at: String,
    pub resolved_at: Option<String>,
}

/// The organization's channels, latest deliveries, alert rules and incidents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationsView {
    pub channels: Vec<ChannelView>,
    pub deliveries: Vec<DeliveryView>,
    pub rules: Vec<RuleView>,
    pub incidents: Vec<IncidentView>,
}
