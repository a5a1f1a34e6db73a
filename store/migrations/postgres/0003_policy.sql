-- The deployment policy (version 3): the recorded policies, the deployment
-- locks and their queues, and the deployment reports that promotion relies
-- on. Expand-only: a replica of the previous release never reads them.

CREATE TABLE IF NOT EXISTS kv_policy (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE IF NOT EXISTS kv_deploy_locks (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE IF NOT EXISTS kv_deploy_queue (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE IF NOT EXISTS kv_deploy_queue_pos (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE IF NOT EXISTS kv_deployments (k bytea PRIMARY KEY, v bytea NOT NULL);
