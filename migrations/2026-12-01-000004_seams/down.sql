DROP INDEX invites_created_by_idx, invites_accepted_by_idx, instance_admin_org_idx,
    applications_live_deployment_idx, app_env_vars_org_idx, domains_org_idx, deployments_org_idx,
    deployments_rollback_of_idx, deployments_superseded_by_idx, webhook_deliveries_deployment_idx,
    backup_schedules_org_idx, backup_schedules_destination_idx, backups_org_idx,
    backups_destination_idx, backups_schedule_idx, restores_org_idx, restores_backup_idx,
    schedule_slots_backup_idx;
DROP INDEX deployments_app_idx;
CREATE INDEX deployments_app_idx ON deployments (application_id, created_at DESC);
UPDATE deployments SET status = 'running' WHERE status = 'superseded';
ALTER TABLE deployments DROP COLUMN superseded_at, DROP COLUMN superseded_by, DROP COLUMN trigger_detail;
ALTER TABLE deployments DROP CONSTRAINT deployments_trigger_check;
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check CHECK (status IN
    ('queued', 'cloning', 'building', 'starting', 'health_checking', 'routing', 'running', 'failed', 'cancelled'));
