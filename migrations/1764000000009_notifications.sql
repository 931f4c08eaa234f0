-- Up Migration
-- Notifications that arrive: low-balance alerts emitted by the database in the very transaction
-- that moves the balance, and webhook endpoints with durable, signed delivery of the outbox.

-- Low-balance thresholds live on the wallet (µc). `low_balance_fired` holds the thresholds whose
-- alert went out and that have not been re-armed (available rose above them again).
ALTER TABLE wallets ADD COLUMN IF NOT EXISTS low_balance_thresholds bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE wallets ADD COLUMN IF NOT EXISTS low_balance_fired bigint[] NOT NULL DEFAULT '{}';

-- One place for every path that moves a balance (usage, holds, expiry, claw-back, corrections):
-- the wallet row's update. Fires `balance.low` once per downward crossing of each threshold
-- (available < threshold) and re-arms it when available rises above the threshold again.
-- Writers hold the wallet row lock, so concurrent debits cross a threshold exactly once.
CREATE OR REPLACE FUNCTION creditflow_balance_low() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  t bigint;
BEGIN
  NEW.low_balance_fired := ARRAY(
    SELECT f FROM unnest(NEW.low_balance_fired) AS f
     WHERE f = ANY (NEW.low_balance_thresholds) AND NEW.available <= f);
  FOREACH t IN ARRAY NEW.low_balance_thresholds LOOP
    IF NEW.available < t AND NOT (t = ANY (NEW.low_balance_fired)) THEN
      NEW.low_balance_fired := NEW.low_balance_fired || t;
      INSERT INTO outbox_events (dedupe_key, type, customer_id, payload)
      VALUES ('balance.low:' || NEW.customer_id || ':' || t || ':' || NEW.version, 'balance.low', NEW.customer_id,
              jsonb_build_object('threshold', trim_scale(t::numeric * 0.000001)::text,
                                 'available', trim_scale(NEW.available::numeric * 0.000001)::text))
      ON CONFLICT (dedupe_key) DO NOTHING;
    END IF;
  END LOOP;
  RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS wallets_balance_low ON wallets;
CREATE TRIGGER wallets_balance_low BEFORE UPDATE ON wallets
  FOR EACH ROW WHEN (cardinality(NEW.low_balance_thresholds) > 0)
  EXECUTE FUNCTION creditflow_balance_low();

CREATE INDEX IF NOT EXISTS outbox_events_customer_idx ON outbox_events (customer_id, id DESC);
CREATE INDEX IF NOT EXISTS outbox_events_type_idx ON outbox_events (type, id DESC);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
  id                     text PRIMARY KEY,
  url                    text NOT NULL CHECK (url ~ '^https?://'),
  -- empty: every type
  types                  text[] NOT NULL DEFAULT '{}',
  description            text,
  secret                 text NOT NULL,
  -- after a rotation the old secret keeps signing (a second signature) until this time
  previous_secret        text,
  previous_secret_until  timestamptz,
  -- the last outbox id fanned out into this endpoint's deliveries (starts at creation: new events only)
  cursor                 bigint NOT NULL DEFAULT 0,
  created_at             timestamptz NOT NULL DEFAULT now(),
  deleted_at             timestamptz
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
  endpoint_id       text NOT NULL REFERENCES webhook_endpoints(id),
  event_id          bigint NOT NULL REFERENCES outbox_events(id),
  status            text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts          integer NOT NULL DEFAULT 0,
  next_attempt_at   timestamptz NOT NULL DEFAULT now(),
  last_status_code  integer,
  last_error        text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  delivered_at      timestamptz,
  PRIMARY KEY (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due_idx ON webhook_deliveries (endpoint_id, next_attempt_at)
  WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS webhook_attempts (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  endpoint_id  text NOT NULL REFERENCES webhook_endpoints(id),
  event_id     bigint NOT NULL,
  attempt      integer NOT NULL,
  status_code  integer,
  error        text,
  latency_ms   integer NOT NULL,
  at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint_idx ON webhook_attempts (endpoint_id, id DESC);
