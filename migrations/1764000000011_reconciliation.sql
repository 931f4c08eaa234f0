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
