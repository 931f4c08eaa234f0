-- Up Migration
-- Reconciliation runs: the nightly (or on-demand) proof that the ledger, its caches and the
-- gateway agree. A run only reads and reports; `discrepancies` grows page by page.
CREATE TABLE IF NOT EXISTS reconciliation_runs (
  id               text PRIMARY KEY,
  date             date NOT NULL,
  workflow_id      text NOT NULL,
  status           text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'clean', 'discrepancies', 'failed')),
  started_at       timestamptz NOT NULL DEFAULT now(),
  finished_at      timestamptz,
  checked_wallets  bigint NOT NULL DEFAULT 0,
  discrepancies    jsonb NOT NULL DEFAULT '[]'::jsonb,
  -- pagesDone: the page cursors already counted, so a retried page activity adds nothing twice
  summary          jsonb NOT NULL DEFAULT '{"pagesDone": []}'::jsonb
);
CREATE INDEX IF NOT EXISTS reconciliation_runs_started_idx ON reconciliation_runs (started_at DESC);

-- A run's notification concerns many customers (or none): an outbox event may name no customer.
ALTER TABLE outbox_events ALTER COLUMN customer_id DROP NOT NULL;

-- Idempotency records are what lets a replay return the first result (invariant 4): append-only
-- like the ledger, so reconciliation checks this trigger instead of probing a record per transaction.
DROP TRIGGER IF EXISTS idempotency_keys_append_only ON idempotency_keys;
CREATE TRIGGER idempotency_keys_append_only BEFORE UPDATE OR DELETE ON idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION creditflow_refuse_ledger_change();
DROP TRIGGER IF EXISTS idempotency_keys_no_truncate ON idempotency_keys;
CREATE TRIGGER idempotency_keys_no_truncate BEFORE TRUNCATE ON idempotency_keys
  FOR EACH STATEMENT EXECUTE FUNCTION creditflow_refuse_ledger_change();
