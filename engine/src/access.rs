//! Project-level roles, enforced where the data is read. A plain member of an
//! organization can be limited to chosen projects with a role in each
//! ([`ProjectRole`]: viewer, deployer, admin); owners, admins and unlimited
//! members reach every project as today.
//!
//! Every engine function that takes the ID of something inside a project calls
//! [`check`] with the least role the act needs before it reads or changes
//! anything. For a limited caller `check` resolves the ID to its project within
//! the caller's organization in one query: a project without a grant answers
//! exactly as another organization's ID does (not found), a granted one with
//! too small a role is refused (forbidden). An unlimited caller costs nothing:
//! the organization scoping of the queries that follow stays the boundary.

use crate::accounts::{Caller, Projects};
use crate::error::{Classify, ErrorKind, StoreError};
use crate::ids::*;
use crate::names::ProjectRole;
use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// Something inside a project, by ID.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Project(ProjectId),
    Environment(EnvironmentId),
    App(AppId),
    Deployment(DeploymentId),
    Domain(DomainId),
    Service(ServiceId),
    Backup(BackupId),
    Schedule(ScheduleId),
    Restore(RestoreId),
}

impl Target {
    /// The query from the ID to its project, within an organization
    /// (`$1` the ID, `$2` the organization). Berth's own database's backups
    /// and schedules (no service) belong to no project.
    fn sql(self) -> (&'static str, Uuid) {
        match self {
            Target::Project(id) => (
                "SELECT id AS project_id FROM projects WHERE id = $1 AND organization_id = $2",
                id.0,
            ),
            Target::Environment(id) => (
                "SELECT project_id FROM environments WHERE id = $1 AND organization_id = $2",
                id.0,
            ),
            Target::App(id) => (
                "SELECT e.project_id FROM applications a JOIN environments e ON e.id = a.environment_id
                 WHERE a.id = $1 AND a.organization_id = $2",
                id.0,
            ),
            Target::Deployment(id) => (
                "SELECT e.project_id FROM deployments d JOIN applications a ON a.id = d.application_id
                 JOIN environments e ON e.id = a.environment_id WHERE d.id = $1 AND d.organization_id = $2",
                id.0,
            ),
            Target::Domain(id) => (
                "SELECT e.project_id FROM domains d JOIN applications a ON a.id = d.application_id
                 JOIN environments e ON e.id = a.environment_id WHERE d.id = $1 AND d.organization_id = $2",
                id.0,
            ),
            Target::Service(id) => (
                "SELECT e.project_id FROM database_services s JOIN environments e ON e.id = s.environment_id
                 WHERE s.id = $1 AND s.organization_id = $2",
                id.0,
            ),
            Target::Backup(id) => (
                "SELECT e.project_id FROM backups b JOIN database_services s ON s.id = b.service_id
                 JOIN environments e ON e.id = s.environment_id WHERE b.id = $1 AND b.organization_id = $2",
                id.0,
            ),
            Target::Schedule(id) => (
                "SELECT e.project_id FROM backup_schedules b JOIN database_services s ON s.id = b.service_id
                 JOIN environments e ON e.id = s.environment_id WHERE b.id = $1 AND b.organization_id = $2",
                id.0,
            ),
            Target::Restore(id) => (
                "SELECT e.project_id FROM restores r JOIN database_services s ON s.id = r.service_id
                 JOIN environments e ON e.id = s.environment_id WHERE r.id = $1 AND r.organization_id = $2",
                id.0,
            ),
        }
    }
}

/// Why a limited caller may not act.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// Not in a project the caller reaches (or not in the organization).
    #[error("not found")]
    NotFound,
    /// In a granted project, but the caller's role there is too small.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for Denied {
    fn kind(&self) -> ErrorKind {
        match self {
            Denied::NotFound => ErrorKind::NotFound,
            Denied::Forbidden(m) => ErrorKind::Forbidden((*m).to_owned()),
            Denied::Store(e) => e.kind(),
        }
    }
}

impl From<diesel::result::Error> for Denied {
    fn from(e: diesel::result::Error) -> Self {
        Denied::Store(e.into())
    }
}

/// `From<Denied>` for a module's error that has `NotFound`, `Forbidden(&str)`
/// and `Store(StoreError)` (written where the error is, so this module
/// imports none of them).
#[macro_export]
macro_rules! denied_into {
    ($error:ident) => {
        impl From<$crate::access::Denied> for $error {
            fn from(d: $crate::access::Denied) -> Self {
                match d {
                    $crate::access::Denied::NotFound => $error::NotFound,
                    $crate::access::Denied::Forbidden(m) => $error::Forbidden(m),
                    $crate::access::Denied::Store(s) => $error::Store(s),
                }
            }
        }
    };
}

/// What a role too small for `need` is told.
fn refusal(need: ProjectRole) -> &'static str {
    match need {
        ProjectRole::Viewer => "your role in this project does not let you see it",
        ProjectRole::Deployer => "this needs the deployer or admin role in this project",
        ProjectRole::Admin => "this needs the admin role in this project",
    }
}

/// Whether `caller` may act on `target` with at least `need`.
pub async fn check(
    conn: &mut AsyncPgConnection,
    caller: &Caller,
    target: Target,
    need: ProjectRole,
) -> Result<(), Denied> {
    match &caller.projects {
        Projects::All => Ok(()),
        Projects::Only(grants) => {
            let project = project_of(conn, caller.org_id, target).await?;
            let role = project.and_then(|p| grants.get(&p).copied()).ok_or(Denied::NotFound)?;
            if role < need {
                return Err(Denied::Forbidden(refusal(need)));
            }
            Ok(())
        }
        // The organization role governs inside: only the reach is checked.
        Projects::Within(chosen) => {
            let project = project_of(conn, caller.org_id, target).await?;
            match project {
                Some(p) if chosen.contains(&p) => Ok(()),
                _ => Err(Denied::NotFound),
            }
        }
    }
}

/// As [`check`], taking a connection from the pool only when one is needed.
pub async fn check_with(
    engine: &crate::Engine,
    caller: &Caller,
    target: Target,
    need: ProjectRole,
) -> Result<(), Denied> {
    if caller.projects == Projects::All {
        return Ok(());
    }
    let mut conn = engine.db.get().await.map_err(StoreError::from)?;
    check(&mut conn, caller, target, need).await
}

/// Acts that are not inside one project (making a project, the organization's
/// S3 destinations, Berth's own database): refused to a limited member and
/// to a key limited to projects.
pub fn organization_wide(caller: &Caller, what: &'static str) -> Result<(), Denied> {
    match caller.projects {
        Projects::All => Ok(()),
        Projects::Only(_) | Projects::Within(_) => Err(Denied::Forbidden(what)),
    }
}

/// Whether `caller` may do what needs an organization admin inside a project
/// (delete an app or a database service, reset a pinned host key), asked
/// *after* [`check`] with [`ProjectRole::Admin`] passed for it: organization
/// admins and owners, and a limited member, whose admin role in that project
/// was just checked. An unlimited plain member may not.
pub fn manages(caller: &Caller) -> bool {
    caller.role.can_manage() || matches!(caller.projects, Projects::Only(_))
}

/// What a page may offer the caller in one project (the engine refuses the
/// rest anyway: this only spares them buttons that would be refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Powers {
    /// Deploy, roll back, edit variables and domains.
    pub deploy: bool,
    /// Create apps and database services, change settings, run backups.
    pub manage: bool,
    /// Delete apps and database services.
    pub delete: bool,
}

/// The caller's [`Powers`] in `project` (a project they reach).
pub fn powers(caller: &Caller, project: Uuid) -> Powers {
    match &caller.projects {
        Projects::All | Projects::Within(_) => Powers {
            deploy: true,
            manage: true,
            delete: caller.role.can_manage(),
        },
        Projects::Only(grants) => {
            let role = grants.get(&project).copied();
            let at_least = |r: ProjectRole| role.is_some_and(|x| x >= r);
            Powers {
                deploy: at_least(ProjectRole::Deployer),
                manage: at_least(ProjectRole::Admin),
                delete: at_least(ProjectRole::Admin),
            }
        }
    }
}

/// The projects a list may show `caller`: `None` for all of them.
pub fn visible(caller: &Caller) -> Option<Vec<Uuid>> {
    match &caller.projects {
        Projects::All => None,
        Projects::Only(grants) => Some(grants.keys().copied().collect()),
        Projects::Within(chosen) => Some(chosen.iter().copied().collect()),
    }
}

#[derive(diesel::QueryableByName)]
struct ProjectOf {
    #[diesel(sql_type = SqlUuid)]
    project_id: Uuid,
}

async fn project_of(conn: &mut AsyncPgConnection, org: OrgId, target: Target) -> Result<Option<Uuid>, Denied> {
    use diesel::OptionalExtension;
    let (sql, id) = target.sql();
    Ok(diesel::sql_query(sql)
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(org.0)
        .get_result::<ProjectOf>(conn)
        .await
        .optional()?
        .map(|r| r.project_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_need_has_its_own_refusal() {
        let said: std::collections::BTreeSet<_> = ProjectRole::ALL.into_iter().map(refusal).collect();
        assert_eq!(said.len(), 3);
    }
}
