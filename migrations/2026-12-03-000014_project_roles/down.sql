ALTER TABLE api_keys DROP COLUMN projects;
DROP TABLE project_grants;
ALTER TABLE memberships DROP COLUMN limited;
