//! Wire types: what server functions return to the browser. Plain data, shared
//! by both builds; the engine's rows never cross the wire directly.

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
    pub orgs: Vec<OrgView>,
}

impl Me {
    pub fn can_manage(&self) -> bool {
        self.role == "owner" || self.role == "admin"
    }
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: Uuid,
    pub name: String,
    pub email: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteView {
    pub id: Uuid,
    pub role: String,
    pub expires_at: String,
    pub created_by: String,
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
}
