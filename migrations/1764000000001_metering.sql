-- Up Migration
-- Metering: versioned rate cards (immutable once published), per-customer overrides, usage events.

CREATE TABLE IF NOT EXISTS rate_cards (
  name            text NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  version         integer NOT NULL CHECK (version > 0),
  effective_from  timestamptz NOT NULL,
  rules           jsonb NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

-- Published versions are immutable: the database refuses changes, as for the ledger.
DROP TRIGGER IF EXISTS rate_cards_immutable ON rate_cards;
CREATE TRIGGER rate_cards_immutable BEFORE UPDATE OR DELETE ON rate_cards
  FOR EACH ROW EXECUTE FUNCTION creditflow_refuse_ledger_change();

CREATE TABLE IF NOT EXISTS customer_rate_cards (
  customer_id  text PRIMARY KEY REFERENCES customers(id),
  card_name    text NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per accepted usage event; (customer_id, id) is the event's idempotency key.
-- quantity is exact numeric; credits are the rated µc; the rate card version used is kept.
CREATE TABLE IF NOT EXISTS usage_events (
  customer_id     text NOT NULL REFERENCES customers(id),
  id              text NOT NULL,
  meter           text NOT NULL,
  quantity        numeric NOT NULL CHECK (quantity >= 0),
  occurred_at     timestamptz NOT NULL,
  dimensions      jsonb NOT NULL DEFAULT '{}'::jsonb,
  credits         bigint NOT NULL CHECK (credits >= 0),
  card_name       text NOT NULL,
  card_version    integer NOT NULL,
  transaction_id  uuid NOT NULL REFERENCES ledger_transactions(id),
  content_hash    text NOT NULL,
  received_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, id)
);
CREATE INDEX IF NOT EXISTS usage_events_customer_time_idx ON usage_events (customer_id, occurred_at);

DROP TRIGGER IF EXISTS usage_events_append_only ON usage_events;
CREATE TRIGGER usage_events_append_only BEFORE UPDATE OR DELETE ON usage_events
  FOR EACH ROW EXECUTE FUNCTION creditflow_refuse_ledger_change();
