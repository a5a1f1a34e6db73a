-- Azure budget reports (cost.azure_budget entries): each budget's latest
-- report, and the keys that recognise a repeated delivery.
CREATE TABLE kv_azure_budgets (k bytea PRIMARY KEY, v bytea NOT NULL);
CREATE TABLE kv_azure_budget_dedup (k bytea PRIMARY KEY, v bytea NOT NULL);
