-- Mattermost callbacks' single-use state (operational, outside the ledger):
-- the trigger ids already used, the dialogs ICA opened, and their expiry.
CREATE TABLE kv_used_triggers (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_dialog_nonces (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_idx_nonce_expiry (k bytea PRIMARY KEY, v bytea NOT NULL);
