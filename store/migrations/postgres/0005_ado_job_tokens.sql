-- Azure DevOps job tokens of checks in callback mode, sealed with a key kept
-- outside the database, until the approval is decided (store/jobtokens.go).
CREATE TABLE kv_ado_job_tokens (k bytea PRIMARY KEY, v bytea NOT NULL);
