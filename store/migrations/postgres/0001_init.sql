-- ICA's PostgreSQL schema, version 1.
--
-- One table per keyspace ("bucket") of the store: ordered byte keys to byte
-- values, exactly what the embedded bbolt engine keeps, so a ledger moves
-- between the two engines verbatim (ica copy-store) and every operation is
-- the same code on both. Sequences of keyspaces live in ica_seq.
--
-- Migrations are expand-only within a release: old and new replicas share a
-- schema during a rolling update.

CREATE TABLE ica_seq (
    bucket text PRIMARY KEY,
    seq    bigint NOT NULL
);

CREATE TABLE kv_meta (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_runs (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_run_start (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_run_pipeline (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_run_status (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_events (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_event_ids (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_approvals (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_approval_run (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_approval_deadline (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_approval_post (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_ledger (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_ledger_time (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_checkpoints (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_merkle (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_outbox (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_outbox_keys (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_outbox_dead (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_costs (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_cost_month (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_approval_checks (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_incidents (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_incident_open (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_incident_post (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_incident_freeze_overrides (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_dashboard_links (k bytea PRIMARY KEY, v bytea NOT NULL);
