-- Up Migration
-- Money out and support actions: refunds (a saga per refund), usage corrections, and who/why on
-- every ledger transaction (plus an audit trail for actions that are not credit movements).

-- Who asked and why, on every transaction a support action or workflow writes. Filled from
-- transaction-local settings (set_config(..., true)) by the ledger core, so no write path has to
-- pass them along: see lib/audit.ts.
ALTER TABLE ledger_transactions
  ADD COLUMN IF NOT EXISTS requested_by text DEFAULT nullif(current_setting('creditflow.requested_by', true), ''),
  ADD COLUMN IF NOT EXISTS reason text DEFAULT nullif(current_setting('creditflow.reason', true), ''),
  ADD COLUMN IF NOT EXISTS workflow_id text DEFAULT nullif(current_setting('creditflow.workflow_id', true), '');

CREATE TABLE IF NOT EXISTS refunds (
  id                   text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,128}$'),
  customer_id          text NOT NULL REFERENCES customers(id),
  lot_id               uuid NOT NULL REFERENCES credit_lots(id),
  status               text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  credits_requested    bigint CHECK (credits_requested > 0),
  credits_clawed_back  bigint NOT NULL DEFAULT 0 CHECK (credits_clawed_back >= 0),
  money_minor          bigint NOT NULL DEFAULT 0 CHECK (money_minor >= 0),
  currency             text,
  gateway              text,
  charge_reference     text,
  refund_reference     text,
  -- set once the claw-back committed; a compensated refund keeps its figures for the record
  clawed_back_at       timestamptz,
  compensated_at       timestamptz,
  failure_code         text,
  failure_reason       text,
  requested_by         text NOT NULL,
  reason               text NOT NULL,
  request_hash         text NOT NULL,
  workflow_id          text NOT NULL,
  created_at           timestamptz NOT NULL DEFAULT now(),
  completed_at         timestamptz,
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refunds_customer_idx ON refunds (customer_id, created_at DESC);
CREATE INDEX IF NOT EXISTS refunds_lot_idx ON refunds (lot_id);
CREATE INDEX IF NOT EXISTS refunds_pending_idx ON refunds (updated_at) WHERE status = 'pending';

-- Usage events are append-only: a correction is its own row (one per event) and its own
-- `correction` ledger transaction; the event is "corrected" when this row exists.
CREATE TABLE IF NOT EXISTS usage_corrections (
  id              text PRIMARY KEY,
  customer_id     text NOT NULL,
  event_id        text NOT NULL,
  credits         bigint NOT NULL CHECK (credits >= 0),
  transaction_id  uuid NOT NULL REFERENCES ledger_transactions(id),
  requested_by    text NOT NULL,
  reason          text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (customer_id, event_id),
  FOREIGN KEY (customer_id, event_id) REFERENCES usage_events (customer_id, id)
);

-- Support and admin actions that move no credits (rate-card versions, API keys): who, what, why.
CREATE TABLE IF NOT EXISTS audit_events (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  action        text NOT NULL,
  subject       text NOT NULL,
  customer_id   text,
  requested_by  text,
  detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_events_customer_idx ON audit_events (customer_id, id DESC);
