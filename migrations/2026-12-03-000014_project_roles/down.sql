DROP TABLE project_grants;
ALTER TABLE memberships DROP COLUMN limited;
