-- Project-level roles (engine::access): a member of an organization can be
-- limited to chosen projects, with a role in each. `limited` false (every
-- existing membership) keeps today's meaning: the member's organization role
-- over every project. Owners and admins are never limited.
ALTER TABLE memberships ADD COLUMN limited BOOLEAN NOT NULL DEFAULT false;
CREATE TABLE project_grants (
    organization_id UUID NOT NULL,
    user_id UUID NOT NULL,
    project_id UUID NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('viewer', 'deployer', 'admin')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id, project_id),
    -- Leaving the organization takes the grants with it.
    FOREIGN KEY (organization_id, user_id) REFERENCES memberships (organization_id, user_id) ON DELETE CASCADE
);
CREATE INDEX project_grants_project ON project_grants (project_id);
-- An API key can be limited to chosen projects (NULL: whatever its owner reaches).
ALTER TABLE api_keys ADD COLUMN projects UUID[];
