-- ICA's PostgreSQL schema, version 2: where and when a witness took each
-- checkpoint (operational state, outside the ledger's replay). The Merkle
-- log's interior nodes live in kv_merkle (version 1); its head range and the
-- checkpoint origin are keys of kv_meta.

CREATE TABLE kv_witness_receipts (k bytea PRIMARY KEY, v bytea NOT NULL);
