-- Up Migration
-- Credit lifecycle: renewals link to the lot they renew, rolled-over credits to their origin lot;
-- a durable outbox for domain events (e.g. credits expiring soon) that the alerts work delivers.

ALTER TABLE credit_lots ADD COLUMN IF NOT EXISTS origin_lot_id uuid REFERENCES credit_lots(id);
ALTER TABLE credit_lots ADD COLUMN IF NOT EXISTS renews_lot_id uuid REFERENCES credit_lots(id);
ALTER TABLE credit_lots ADD COLUMN IF NOT EXISTS period integer NOT NULL DEFAULT 1 CHECK (period >= 1);
CREATE INDEX IF NOT EXISTS credit_lots_expiry_idx ON credit_lots (customer_id, expires_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS outbox_events (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  dedupe_key    text NOT NULL UNIQUE,
  type          text NOT NULL,
  customer_id   text NOT NULL REFERENCES customers(id),
  payload       jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  delivered_at  timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_events_pending_idx ON outbox_events (id) WHERE delivered_at IS NULL;
