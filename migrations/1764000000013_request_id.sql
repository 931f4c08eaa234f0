-- Up Migration
-- The API request that wrote a ledger transaction (its X-Request-Id), filled like requested_by /
-- workflow_id from a transaction-local setting the ledger core sets (lib/audit.ts), so a ledger
-- line leads to its request's log lines. NULL for work no request did (workflow steps, group-
-- committed usage).
ALTER TABLE ledger_transactions
  ADD COLUMN IF NOT EXISTS request_id text DEFAULT nullif(current_setting('creditflow.request_id', true), '');
