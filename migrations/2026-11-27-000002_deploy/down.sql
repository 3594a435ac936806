DROP TABLE webhook_deliveries;
ALTER TABLE applications DROP CONSTRAINT applications_live_deployment_fk;
DROP TABLE deployments;
DROP TABLE domains;
DROP TABLE app_env_vars;
DROP TABLE applications;
