DROP TABLE container_events;
ALTER TABLE instance DROP COLUMN running_release;
DROP TABLE alert_incidents;
DROP TABLE alert_rules;
DROP TABLE notification_deliveries;
DROP TABLE notification_channels;
