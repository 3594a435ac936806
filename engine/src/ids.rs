//! ID newtypes, one per table, so a project ID can never be passed where an
//! environment ID is expected. Each is a diesel type (a UUID column), so rows
//! and queries carry them directly.

use diesel::deserialize::{FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{Output, ToSql};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, AsExpression, FromSqlRow)]
        #[serde(transparent)]
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        pub struct $name(pub Uuid);

        impl ToSql<diesel::sql_types::Uuid, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> diesel::serialize::Result {
                <Uuid as ToSql<diesel::sql_types::Uuid, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<diesel::sql_types::Uuid, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <Uuid as FromSql<diesel::sql_types::Uuid, Pg>>::from_sql(bytes).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, uuid::Error> {
                s.parse().map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
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
    /// A row of `notification_channels`.
    ChannelId,
    /// A row of `notification_deliveries`.
    DeliveryId,
    /// A row of `api_keys`.
    ApiKeyId,
);
