//! The lifecycles of Berth's jobs and services: each status as an enum with its
//! rules (which states are in progress, which are final, which moves are
//! allowed). The engine stores them in checked TEXT columns (feature `diesel`)
//! and enforces the moves; the UI shows them. Both use these very types, so no
//! side re-derives a rule from a string.

use serde::{Deserialize, Serialize};

/// How a status looks in the UI: one colour per tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Done and well (running, succeeded, verified).
    Good,
    /// Stopped short (failed, exited).
    Bad,
    /// At rest, neither good nor bad (queued, cancelled, stopped, superseded).
    Idle,
    /// Work in progress (shown with a pulse).
    Busy,
}

/// What every lifecycle enum offers.
pub trait Lifecycle: Copy + Eq + std::fmt::Debug + 'static {
    /// Every state, in lifecycle order.
    const ALL: &'static [Self];
    /// The name stored in the database and sent on the wire.
    fn as_str(self) -> &'static str;
    /// Words for a person.
    fn label(self) -> &'static str;
    fn tone(self) -> Tone;
    /// Whether the state machine allows going from `self` to `next`.
    fn can_become(self, next: Self) -> bool;

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// `next`, if the state machine allows it.
    fn transition(self, next: Self) -> Result<Self, IllegalTransition> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(IllegalTransition {
                from: self.as_str(),
                to: next.as_str(),
            })
        }
    }
}

/// A move the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: &'static str,
    pub to: &'static str,
}

impl std::fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot go from {} to {}", self.from, self.to)
    }
}

impl std::error::Error for IllegalTransition {}

/// Declares an enum stored as TEXT: the variants with their stored names (and
/// words for a person when they differ), serde as those names, `Display`,
/// `FromStr` and (feature `diesel`) the column mapping. Given `tone` and `moves`
/// rules it is a lifecycle: it implements [`Lifecycle`] with them.
macro_rules! stored_enum {
    (
        $(#[$doc:meta])* $name:ident {
            $($(#[$vdoc:meta])* $variant:ident = $text:literal $(as $label:literal)?),+ $(,)?
        }
        tone($t:ident) $tone:block
        moves($from:ident, $to:ident) $moves:block
    ) => {
        stored_enum! { $(#[$doc])* $name { $($(#[$vdoc])* $variant = $text $(as $label)?),+ } }

        impl Lifecycle for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];

            fn as_str(self) -> &'static str {
                self.name()
            }

            fn label(self) -> &'static str {
                self.words()
            }

            fn tone(self) -> Tone {
                let $t = self;
                $tone
            }

            fn can_become(self, next: Self) -> bool {
                let ($from, $to) = (self, next);
                $moves
            }
        }
    };
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal $(as $label:literal)?),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "diesel", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const VARIANTS: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and sent on the wire.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Words for a person.
            pub const fn words(self) -> &'static str {
                match self { $($name::$variant => stored_enum!(@label $text $($label)?)),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }

        #[cfg(feature = "diesel")]
        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>) -> diesel::serialize::Result {
                use std::io::Write;
                out.write_all(self.name().as_bytes())?;
                Ok(diesel::serialize::IsNull::No)
            }
        }

        #[cfg(feature = "diesel")]
        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let s = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg>>::from_sql(bytes)?;
                s.parse().map_err(Into::into)
            }
        }
    };
    (@label $text:literal) => { $text };
    (@label $text:literal $label:literal) => { $label };
}

stored_enum! {
    /// A deployment, from the request to its end.
    ///
    /// ```text
    /// queued ─► cloning ─► building ─► starting ─► health_checking ─► routing ─► running ─► superseded
    ///   │          (git)      (git: build, image: pull)  ▲
    ///   └──────────────── rollback ───────────────────────┘
    /// anything before running ─► failed (with a reason) | cancelled
    /// ```
    DeploymentStatus {
        /// Accepted and recorded; waiting for a worker (and for the app's previous deployment).
        Queued = "queued",
        /// A worker is cloning the repository (git sources).
        Cloning = "cloning",
        /// Building the image from the checkout, or pulling and tagging an image source.
        Building = "building",
        /// Creating and starting the new container beside the live one.
        Starting = "starting",
        /// Waiting for the new container's health check.
        HealthChecking = "health_checking" as "health check",
        /// Moving the route to the new container and confirming it through Traefik.
        Routing = "routing",
        /// Live: the route reached it, and no later deployment has replaced it.
        Running = "running",
        /// Was live until a later deployment (recorded) replaced it. Final.
        Superseded = "superseded",
        /// Stopped short with a reason; the previous version kept serving. Final.
        Failed = "failed",
        /// Cancelled by a user before it went live. Final.
        Cancelled = "cancelled",
    }
    tone(s) {
        use DeploymentStatus::*;
        match s {
            Running => Tone::Good,
            Failed => Tone::Bad,
            Queued | Superseded | Cancelled => Tone::Idle,
            Cloning | Building | Starting | HealthChecking | Routing => Tone::Busy,
        }
    }
    moves(from, to) {
        use DeploymentStatus::*;
        match (from, to) {
            (from, Failed | Cancelled) => from.in_progress(),
            (Queued, Cloning | Building | Starting) => true,
            (Cloning, Building) => true,
            (Building, Starting) => true,
            (Starting, HealthChecking) => true,
            (HealthChecking, Routing) => true,
            (Routing, Running) => true,
            (Running, Superseded) => true,
            _ => false,
        }
    }
}

impl DeploymentStatus {
    /// The statuses in which a worker holds the deployment (one per app at a time).
    pub const ACTIVE: [DeploymentStatus; 5] = [
        DeploymentStatus::Cloning,
        DeploymentStatus::Building,
        DeploymentStatus::Starting,
        DeploymentStatus::HealthChecking,
        DeploymentStatus::Routing,
    ];

    /// A worker holds it.
    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }

    /// Queued or active: the work is not over.
    pub fn in_progress(self) -> bool {
        self == DeploymentStatus::Queued || self.is_active()
    }

    /// The job is over (whether or not the deployment still serves).
    pub fn is_finished(self) -> bool {
        !self.in_progress()
    }

    /// It reached `running` once: its image can be rolled back to.
    pub fn went_live(self) -> bool {
        matches!(self, DeploymentStatus::Running | DeploymentStatus::Superseded)
    }
}

stored_enum! {
    /// A backup or a restore: a job that runs once.
    JobStatus {
        /// Recorded; waiting for a worker (and for other work on the same service).
        Queued = "queued",
        /// A worker is running it.
        Running = "running",
        /// Done. Final.
        Succeeded = "succeeded",
        /// Stopped short with the reason recorded beside it. Final.
        Failed = "failed",
    }
    tone(s) {
        match s {
            JobStatus::Succeeded => Tone::Good,
            JobStatus::Failed => Tone::Bad,
            JobStatus::Queued => Tone::Idle,
            JobStatus::Running => Tone::Busy,
        }
    }
    moves(from, to) {
        use JobStatus::*;
        matches!((from, to), (Queued, Running | Failed) | (Running, Succeeded | Failed))
    }
}

impl JobStatus {
    pub fn in_progress(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

stored_enum! {
    /// A restore drill of one backup: restored into a throwaway container and counted.
    DrillStatus {
        Queued = "queued",
        Running = "running",
        /// What came back was counted (the detail says what). Final until drilled again.
        Verified = "verified",
        /// The restore or the count failed (the detail says why). Final until drilled again.
        Failed = "failed",
    }
    tone(s) {
        match s {
            DrillStatus::Verified => Tone::Good,
            DrillStatus::Failed => Tone::Bad,
            DrillStatus::Queued => Tone::Idle,
            DrillStatus::Running => Tone::Busy,
        }
    }
    moves(from, to) {
        use DrillStatus::*;
        // A finished drill may be queued again (drill the same backup later).
        matches!(
            (from, to),
            (Queued, Running | Failed) | (Running, Verified | Failed) | (Verified | Failed, Queued)
        )
    }
}

impl DrillStatus {
    pub fn in_progress(self) -> bool {
        matches!(self, DrillStatus::Queued | DrillStatus::Running)
    }
}

stored_enum! {
    /// What a database service is doing, as the UI shows it: Docker's report read
    /// against what the operator asked for. Not stored: derived on each read, so
    /// any state may follow any other.
    ServiceState {
        /// Up, as asked.
        Running = "running",
        /// Asked to run; its container is being created, pulled or is booting.
        Starting = "starting",
        /// Stopped, as asked.
        Stopped = "stopped",
        /// Asked to run, but its container exited (or Docker refused to start it).
        Failed = "failed",
        /// Crashing and being restarted by Docker again and again.
        Restarting = "restarting",
        /// Docker cannot be asked.
        Unknown = "unknown",
    }
    tone(s) {
        match s {
            ServiceState::Running => Tone::Good,
            ServiceState::Failed | ServiceState::Restarting => Tone::Bad,
            ServiceState::Stopped | ServiceState::Unknown => Tone::Idle,
            ServiceState::Starting => Tone::Busy,
        }
    }
    moves(_from, _to) {
        true
    }
}

impl Default for ServiceState {
    /// Nothing is known until Docker has been asked.
    fn default() -> Self {
        ServiceState::Unknown
    }
}

stored_enum! {
    /// What started a deployment.
    Trigger {
        /// The Deploy button (or its server function).
        Manual = "manual",
        /// A GitHub push or the generic deploy webhook.
        Webhook = "webhook",
        /// A rollback to an earlier deployment's image.
        Rollback = "rollback",
        /// The REST API.
        Api = "api",
        /// Berth itself, repairing what should run.
        Repair = "repair",
    }
}

stored_enum! {
    /// What started a backup.
    BackupTrigger {
        Manual = "manual",
        Schedule = "schedule",
        /// Found in the bucket and added to the history.
        Bucket = "bucket",
    }
}

stored_enum! {
    /// One notification delivery to one channel: a job with retries.
    DeliveryStatus {
        /// Waiting for a worker (a first try, or a retry whose time has come).
        Queued = "queued",
        /// A worker is sending it.
        Sending = "sending",
        /// The receiver accepted it. Final.
        Succeeded = "succeeded",
        /// Refused for good, or every attempt failed (the error says why). Final.
        Failed = "failed",
    }
    tone(s) {
        match s {
            DeliveryStatus::Succeeded => Tone::Good,
            DeliveryStatus::Failed => Tone::Bad,
            DeliveryStatus::Queued => Tone::Idle,
            DeliveryStatus::Sending => Tone::Busy,
        }
    }
    moves(from, to) {
        use DeliveryStatus::*;
        // A failed attempt with attempts left goes back to the queue.
        matches!((from, to), (Queued, Sending | Failed) | (Sending, Succeeded | Failed | Queued))
    }
}

stored_enum! {
    /// Where a notification goes: an incoming-webhook format or email.
    ChannelKind {
        Slack = "slack" as "Slack",
        Discord = "discord" as "Discord",
        Telegram = "telegram" as "Telegram",
        Teams = "teams" as "Microsoft Teams",
        GoogleChat = "google_chat" as "Google Chat",
        /// JSON signed with HMAC-SHA256.
        Webhook = "webhook" as "Signed webhook",
        Email = "email" as "Email (SMTP)",
    }
}

stored_enum! {
    /// What a notification is about.
    NotifyEvent {
        DeploymentSucceeded = "deployment_succeeded" as "Deployment succeeded",
        DeploymentFailed = "deployment_failed" as "Deployment failed",
        BackupSucceeded = "backup_succeeded" as "Backup succeeded",
        BackupFailed = "backup_failed" as "Backup failed",
        DrillFailed = "drill_failed" as "Restore drill failed",
        Upgraded = "upgraded" as "Berth upgraded",
        /// An alert rule's incident started or cleared (sent to the rule's channels).
        Alert = "alert" as "Alert",
        /// "Send test" on the page.
        Test = "test" as "Test",
    }
}

impl NotifyEvent {
    /// The events a channel chooses among (alerts go where their rule says,
    /// tests where the user sends them).
    pub const CHOOSABLE: &'static [NotifyEvent] = &[
        NotifyEvent::DeploymentSucceeded,
        NotifyEvent::DeploymentFailed,
        NotifyEvent::BackupSucceeded,
        NotifyEvent::BackupFailed,
        NotifyEvent::DrillFailed,
        NotifyEvent::Upgraded,
    ];
}

stored_enum! {
    /// One breach of one alert rule by one subject.
    IncidentState {
        /// Above the threshold, not yet for long enough. Nobody told.
        Pending = "pending",
        /// Held past the rule's duration: the channels were told.
        Firing = "firing",
        /// Back under the threshold after firing: told too. Final.
        Resolved = "resolved",
    }
    tone(s) {
        match s {
            IncidentState::Firing => Tone::Bad,
            IncidentState::Resolved => Tone::Good,
            IncidentState::Pending => Tone::Idle,
        }
    }
    moves(from, to) {
        use IncidentState::*;
        // A pending breach that clears is forgotten, not resolved.
        matches!((from, to), (Pending, Firing) | (Firing, Resolved))
    }
}

stored_enum! {
    /// What an alert rule watches.
    AlertMetric {
        /// An app's or a database service's CPU, in percent of one core.
        Cpu = "cpu" as "CPU",
        /// An app's or a database service's memory, in percent of its limit.
        Memory = "memory" as "Memory",
        /// The disk under Berth's data directory (instance administrators).
        Disk = "disk" as "Disk",
        /// Restarts of an app's or a database's container (by Docker's
        /// restart policy or by Berth's repairs), counted over a window.
        Restarts = "restarts" as "Restarts",
        /// OOM kills of an app's or a database's container, counted over a window.
        Oom = "oom" as "OOM kills",
        /// A domain's certificate failing, or expiring within a number of days.
        Certificate = "certificate" as "Certificate failing or expiring",
    }
}

impl AlertMetric {
    /// Whether the rule counts events over a window (else: a percent held for a while).
    pub const fn counts(self) -> bool {
        matches!(self, AlertMetric::Restarts | AlertMetric::Oom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_round_trip<T: Lifecycle + std::str::FromStr>() {
        for s in T::ALL {
            assert_eq!(T::parse(s.as_str()), Some(*s));
        }
    }

    #[test]
    fn every_name_round_trips() {
        names_round_trip::<DeploymentStatus>();
        names_round_trip::<JobStatus>();
        names_round_trip::<DrillStatus>();
        names_round_trip::<ServiceState>();
        names_round_trip::<DeliveryStatus>();
        names_round_trip::<IncidentState>();
    }

    #[test]
    fn deliveries_end_once_and_retry_only_from_sending() {
        use DeliveryStatus::*;
        for from in [Succeeded, Failed] {
            for to in DeliveryStatus::ALL {
                assert!(!from.can_become(*to), "{from:?} -> {to:?}");
            }
        }
        assert!(Sending.can_become(Queued));
        assert!(!Queued.can_become(Succeeded));
        assert_eq!(NotifyEvent::VARIANTS.len(), 8);
        assert!(!NotifyEvent::CHOOSABLE.contains(&NotifyEvent::Test));
        assert!(IncidentState::Pending.can_become(IncidentState::Firing));
        assert!(!IncidentState::Pending.can_become(IncidentState::Resolved));
        assert!(!IncidentState::Resolved.can_become(IncidentState::Firing));
    }

    #[test]
    fn final_deployment_states_go_nowhere_and_running_only_to_superseded() {
        use DeploymentStatus::*;
        for from in [Superseded, Failed, Cancelled] {
            for to in DeploymentStatus::ALL {
                assert!(!from.can_become(*to), "{from:?} -> {to:?}");
            }
        }
        for to in DeploymentStatus::ALL {
            assert_eq!(Running.can_become(*to), *to == Superseded, "running -> {to:?}");
        }
    }

    #[test]
    fn the_happy_path_is_allowed_and_skipping_is_not() {
        use DeploymentStatus::*;
        let path = [
            Queued,
            Cloning,
            Building,
            Starting,
            HealthChecking,
            Routing,
            Running,
            Superseded,
        ];
        for w in path.windows(2) {
            assert!(w[0].can_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
        assert!(!Cloning.can_become(Running));
        assert!(!Building.can_become(Routing));
        assert!(Queued.can_become(Starting), "rollback skips the build");
        assert!(Routing.can_become(Failed));
        assert!(Running.transition(Cancelled).is_err());
        assert_eq!(Queued.transition(Cloning), Ok(Cloning));
        for s in DeploymentStatus::ACTIVE {
            assert!(s.is_active() && s.in_progress() && !s.is_finished());
        }
    }

    #[test]
    fn serde_uses_the_stored_names() {
        assert_eq!(serde_json_like(DeploymentStatus::HealthChecking), "health_checking");
        assert_eq!(DeploymentStatus::HealthChecking.label(), "health check");
    }

    fn serde_json_like(s: DeploymentStatus) -> String {
        s.to_string()
    }
}
