//! ID newtypes, one per table, so a project ID can never be passed where an
//! environment ID is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    )*};
}

id_type!(
    /// A row of `users`.
    UserId,
    /// A row of `organizations`.
    OrgId,
    /// A row of `projects`.
    ProjectId,
    /// A row of `environments`.
    EnvironmentId,
    /// A row of `invites`.
    InviteId,
    /// A row of `applications`.
    AppId,
    /// A row of `deployments`.
    DeploymentId,
    /// A row of `domains`.
    DomainId,
    /// A row of `database_services`.
    ServiceId,
    /// A row of `s3_destinations`.
    DestinationId,
    /// A row of `backups`.
    BackupId,
    /// A row of `restores`.
    RestoreId,
    /// A row of `backup_schedules`.
    ScheduleId,
);
