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

/// Declares a lifecycle enum stored as TEXT: the variants with their stored
/// names, serde as those names, `Display`, and (feature `diesel`) the column mapping.
macro_rules! lifecycle_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "diesel", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
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
}

lifecycle_enum! {
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
        HealthChecking = "health_checking",
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

impl Lifecycle for DeploymentStatus {
    const ALL: &'static [Self] = &[
        DeploymentStatus::Queued,
        DeploymentStatus::Cloning,
        DeploymentStatus::Building,
        DeploymentStatus::Starting,
        DeploymentStatus::HealthChecking,
        DeploymentStatus::Routing,
        DeploymentStatus::Running,
        DeploymentStatus::Superseded,
        DeploymentStatus::Failed,
        DeploymentStatus::Cancelled,
    ];

    fn as_str(self) -> &'static str {
        self.name()
    }

    fn label(self) -> &'static str {
        match self {
            DeploymentStatus::HealthChecking => "health check",
            other => other.name(),
        }
    }

    fn tone(self) -> Tone {
        use DeploymentStatus::*;
        match self {
            Running => Tone::Good,
            Failed => Tone::Bad,
            Queued | Superseded | Cancelled => Tone::Idle,
            Cloning | Building | Starting | HealthChecking | Routing => Tone::Busy,
        }
    }

    fn can_become(self, next: Self) -> bool {
        use DeploymentStatus::*;
        match (self, next) {
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

lifecycle_enum! {
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
}

impl JobStatus {
    pub fn in_progress(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

impl Lifecycle for JobStatus {
    const ALL: &'static [Self] = &[JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed];

    fn as_str(self) -> &'static str {
        self.name()
    }

    fn label(self) -> &'static str {
        self.name()
    }

    fn tone(self) -> Tone {
        match self {
            JobStatus::Succeeded => Tone::Good,
            JobStatus::Failed => Tone::Bad,
            JobStatus::Queued => Tone::Idle,
            JobStatus::Running => Tone::Busy,
        }
    }

    fn can_become(self, next: Self) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued, Running) | (Queued, Failed) | (Running, Succeeded) | (Running, Failed)
        )
    }
}

lifecycle_enum! {
    /// A restore drill of one backup: restored into a throwaway container and counted.
    DrillStatus {
        Queued = "queued",
        Running = "running",
        /// What came back was counted (the detail says what). Final.
        Verified = "verified",
        /// The restore or the count failed (the detail says why). Final.
        Failed = "failed",
    }
}

impl DrillStatus {
    pub fn in_progress(self) -> bool {
        matches!(self, DrillStatus::Queued | DrillStatus::Running)
    }
}

impl Lifecycle for DrillStatus {
    const ALL: &'static [Self] = &[
        DrillStatus::Queued,
        DrillStatus::Running,
        DrillStatus::Verified,
        DrillStatus::Failed,
    ];

    fn as_str(self) -> &'static str {
        self.name()
    }

    fn label(self) -> &'static str {
        self.name()
    }

    fn tone(self) -> Tone {
        match self {
            DrillStatus::Verified => Tone::Good,
            DrillStatus::Failed => Tone::Bad,
            DrillStatus::Queued => Tone::Idle,
            DrillStatus::Running => Tone::Busy,
        }
    }

    fn can_become(self, next: Self) -> bool {
        use DrillStatus::*;
        // A finished drill may be queued again (drill the same backup later).
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Failed)
                | (Running, Verified)
                | (Running, Failed)
                | (Verified, Queued)
                | (Failed, Queued)
        )
    }
}

lifecycle_enum! {
    /// What a database service is doing, as the UI shows it: Docker's report read
    /// against what the operator asked for. Not stored: derived on each read.
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
}

impl Default for ServiceState {
    /// Nothing is known until Docker has been asked.
    fn default() -> Self {
        ServiceState::Unknown
    }
}

impl Lifecycle for ServiceState {
    const ALL: &'static [Self] = &[
        ServiceState::Running,
        ServiceState::Starting,
        ServiceState::Stopped,
        ServiceState::Failed,
        ServiceState::Restarting,
        ServiceState::Unknown,
    ];

    fn as_str(self) -> &'static str {
        self.name()
    }

    fn label(self) -> &'static str {
        self.name()
    }

    fn tone(self) -> Tone {
        match self {
            ServiceState::Running => Tone::Good,
            ServiceState::Failed | ServiceState::Restarting => Tone::Bad,
            ServiceState::Stopped | ServiceState::Unknown => Tone::Idle,
            ServiceState::Starting => Tone::Busy,
        }
    }

    /// Derived from Docker, never moved by a writer: any state may follow any other.
    fn can_become(self, _next: Self) -> bool {
        true
    }
}

lifecycle_enum! {
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

lifecycle_enum! {
    /// What started a backup.
    BackupTrigger {
        Manual = "manual",
        Schedule = "schedule",
        /// Found in the bucket and added to the history.
        Bucket = "bucket",
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
        let path = [Queued, Cloning, Building, Starting, HealthChecking, Routing, Running, Superseded];
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
        assert_eq!(
            serde_json_like(DeploymentStatus::HealthChecking),
            "health_checking"
        );
        assert_eq!(DeploymentStatus::HealthChecking.label(), "health check");
    }

    fn serde_json_like(s: DeploymentStatus) -> String {
        s.to_string()
    }
}
