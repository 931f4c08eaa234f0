-- Up Migration
-- The last two customer-owned tables keyed by customer (the sharding rule of migration 016):
--  1. idempotency_keys gains customer_id, primary key (customer_id, key): a ledger command's record
--     lives beside its customer's transaction, and one customer's key can never replay another's result.
--  2. outbox_events holds customer events only (customer_id NOT NULL again, keys start with it);
--     events about no customer (reconciliation alerts) move to operator_events. Both draw ids from
--     one sequence, so a notification id (`evt_<id>`) names one event; notification_events reads both.

-- 1. idempotency_keys. The records are append-only (migration 011): the backfill runs as the owner
-- with that trigger off, and this migration's transaction turns it on again.
ALTER TABLE idempotency_keys ADD COLUMN customer_id text REFERENCES customers (id);
ALTER TABLE idempotency_keys DISABLE TRIGGER idempotency_keys_append_only;
-- (a) The command's own transaction names the customer.
UPDATE idempotency_keys k SET customer_id = t.customer_id
  FROM ledger_transactions t WHERE t.idempotency_key = k.key;
-- (b) A command that appended nothing (an expiry of an empty lot, a release of a finished hold):
-- its key's parts (composeKey: ':'-separated, '%3A'/'%25' escaped) name a customer, a lot or a
-- refund; taken only when they name exactly one customer.
UPDATE idempotency_keys k SET customer_id = m.customer_id
  FROM (SELECT k2.key, min(c.customer_id) AS customer_id
          FROM idempotency_keys k2
          CROSS JOIN LATERAL unnest(string_to_array(k2.key, ':')) AS p(raw)
          CROSS JOIN LATERAL (SELECT replace(replace(p.raw, '%3A', ':'), '%25', '%') AS part) d
          JOIN LATERAL (SELECT id AS customer_id FROM customers WHERE id = d.part
                        UNION SELECT customer_id FROM credit_lots
                               WHERE d.part ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                                 AND id = d.part::uuid
                        UNION SELECT customer_id FROM refunds WHERE id = d.part) c ON true
         WHERE k2.customer_id IS NULL
         GROUP BY k2.key HAVING count(DISTINCT c.customer_id) = 1) m
 WHERE k.key = m.key AND k.customer_id IS NULL;
-- (c) Anything left cannot be placed safely: stop, and say which, rather than guess.
DO $$
DECLARE
  n bigint;
  sample text;
BEGIN
  SELECT count(*), string_agg(key, ', ') FILTER (WHERE rn <= 5) INTO n, sample
    FROM (SELECT key, row_number() OVER (ORDER BY created_at) AS rn FROM idempotency_keys WHERE customer_id IS NULL) x;
  IF n > 0 THEN
    RAISE EXCEPTION '% idempotency record(s) name no single customer (e.g. %): set their customer_id as the owner, then migrate again', n, sample;
  END IF;
END $$;
ALTER TABLE idempotency_keys ENABLE TRIGGER idempotency_keys_append_only;
ALTER TABLE idempotency_keys ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey, ADD PRIMARY KEY (customer_id, key);

-- 2. Events about no customer get their own table, with the outbox's id sequence.
CREATE TABLE IF NOT EXISTS operator_events (
  id          bigint PRIMARY KEY,
  dedupe_key  text NOT NULL UNIQUE,
  type        text NOT NULL,
  payload     jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  -- as outbox_events.xid (migration 010): webhook fan-out reads both by committed-transaction horizon
  xid         xid8 NOT NULL DEFAULT pg_current_xact_id()
);
DO $$
BEGIN
  EXECUTE format('ALTER TABLE operator_events ALTER COLUMN id SET DEFAULT nextval(%L::regclass)',
                 pg_get_serial_sequence('outbox_events', 'id'));
END $$;
CREATE INDEX IF NOT EXISTS operator_events_xid_idx ON operator_events (xid);
CREATE INDEX IF NOT EXISTS operator_events_type_idx ON operator_events (type, id DESC);
INSERT INTO operator_events (id, dedupe_key, type, payload, created_at, xid)
  SELECT id, dedupe_key, type, payload, created_at, xid FROM outbox_events WHERE customer_id IS NULL;
-- A delivery names an event of either table (one id sequence), so its foreign key goes.
ALTER TABLE webhook_deliveries DROP CONSTRAINT IF EXISTS webhook_deliveries_event_id_fkey;
DELETE FROM outbox_events WHERE customer_id IS NULL;
ALTER TABLE outbox_events ALTER COLUMN customer_id SET NOT NULL;
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_pkey, ADD PRIMARY KEY (customer_id, id);
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_dedupe_key_key,
  ADD CONSTRAINT outbox_events_dedupe_key_key UNIQUE (customer_id, dedupe_key);
-- Deliveries and the notification listing look events up by id alone.
CREATE INDEX IF NOT EXISTS outbox_events_id_idx ON outbox_events (id);

DROP TRIGGER IF EXISTS operator_events_notify ON operator_events;
CREATE TRIGGER operator_events_notify AFTER INSERT ON operator_events
  FOR EACH STATEMENT EXECUTE FUNCTION creditflow_outbox_notify();

-- Every notification, whoever it concerns: what the API lists and webhooks deliver.
CREATE OR REPLACE VIEW notification_events AS
  SELECT id, dedupe_key, type, customer_id, payload, created_at, xid FROM outbox_events
  UNION ALL
  SELECT id, dedupe_key, type, NULL::text, payload, created_at, xid FROM operator_events;

-- The low-balance trigger's conflict target follows the new unique key.
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
      ON CONFLICT (customer_id, dedupe_key) DO NOTHING;
    END IF;
  END LOOP;
  RETURN NEW;
END;
$$;

-- Append-only like the outbox (migration 014's defaults gave the new table UPDATE and DELETE).
REVOKE UPDATE, DELETE, TRUNCATE ON operator_events FROM creditflow_app;
GRANT SELECT, INSERT ON operator_events TO creditflow_app;
GRANT SELECT ON notification_events TO creditflow_app;
