//! The deployment lifecycle as an explicit state machine. Every status change the
//! pipeline makes goes through [`Status::can_become`], and the database update is
//! conditional on the status it expects to leave, so two processes can never both
//! move the same deployment.
//!
//! ```text
//! queued ─► cloning ─► building ─► starting ─► health_checking ─► routing ─► running
//!   │          (git)      (git: build, image: pull)  ▲
//!   └──────────────── rollback ───────────────────────┘
//! any non-terminal ─► failed (with a reason) | cancelled
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted and recorded; waiting for a worker (and for the app's previous deployment).
    Queued,
    /// A worker is cloning the repository (git sources).
    Cloning,
    /// Building the image from the checkout, or pulling and tagging an image source.
    Building,
    /// Creating and starting the new container beside the live one.
    Starting,
    /// Waiting for the new container's health check.
    HealthChecking,
    /// Moving the route to the new container and confirming it through Traefik.
    Routing,
    /// Live (or was): the route reached it. Terminal.
    Running,
    /// Stopped short with a reason; the previous version kept serving. Terminal.
    Failed,
    /// Cancelled by a user before it went live. Terminal.
    Cancelled,
}

/// A transition the state machine does not allow (a bug in the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a deployment cannot go from {from:?} to {to:?}")]
pub struct IllegalTransition {
    pub from: Status,
    pub to: Status,
}

/// The statuses in which a worker holds the deployment (one per app at a time:
/// a partial unique index enforces it).
pub const ACTIVE: [&str; 5] = ["cloning", "building", "starting", "health_checking", "routing"];
pub const ACTIVE_OR_QUEUED: [&str; 6] = [
    "queued",
    "cloning",
    "building",
    "starting",
    "health_checking",
    "routing",
];

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Cloning => "cloning",
            Status::Building => "building",
            Status::Starting => "starting",
            Status::HealthChecking => "health_checking",
            Status::Routing => "routing",
            Status::Running => "running",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Status::Queued,
            "cloning" => Status::Cloning,
            "building" => Status::Building,
            "starting" => Status::Starting,
            "health_checking" => Status::HealthChecking,
            "routing" => Status::Routing,
            "running" => Status::Running,
            "failed" => Status::Failed,
            "cancelled" => Status::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Running | Status::Failed | Status::Cancelled)
    }

    pub fn is_active(self) -> bool {
        !self.is_terminal() && self != Status::Queued
    }

    /// `next`, if the state machine allows going there from here.
    pub fn transition(self, next: Status) -> Result<Status, IllegalTransition> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(IllegalTransition { from: self, to: next })
        }
    }

    /// The transitions the pipeline may make.
    pub fn can_become(self, next: Status) -> bool {
        use Status::*;
        match (self, next) {
            (from, Failed | Cancelled) => !from.is_terminal(),
            (Queued, Cloning | Building | Starting) => true,
            (Cloning, Building) => true,
            (Building, Starting) => true,
            (Starting, HealthChecking) => true,
            (HealthChecking, Routing) => true,
            (Routing, Running) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Status::*;
    use super::*;

    const ALL: [Status; 9] = [
        Queued,
        Cloning,
        Building,
        Starting,
        HealthChecking,
        Routing,
        Running,
        Failed,
        Cancelled,
    ];

    #[test]
    fn names_round_trip_and_active_list_matches() {
        for s in ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(ACTIVE.contains(&s.as_str()), s.is_active(), "{s:?}");
        }
    }

    #[test]
    fn terminal_states_are_final() {
        for from in [Running, Failed, Cancelled] {
            for to in ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn the_happy_path_is_allowed_and_skipping_is_not() {
        let path = [Queued, Cloning, Building, Starting, HealthChecking, Routing, Running];
        for w in path.windows(2) {
            assert!(w[0].can_become(w[1]), "{:?} -> {:?}", w[0], w[1]);
        }
        assert!(!Cloning.can_become(Running));
        assert!(!Building.can_become(Routing));
        assert!(!HealthChecking.can_become(Running));
        assert!(Queued.can_become(Starting), "rollback skips the build");
        assert!(Routing.can_become(Failed));
        assert_eq!(
            Running.transition(Failed),
            Err(IllegalTransition {
                from: Running,
                to: Failed
            })
        );
        assert_eq!(Queued.transition(Cloning), Ok(Cloning));
    }
}
