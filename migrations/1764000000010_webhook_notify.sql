-- Up Migration
-- Webhook delivery reads the outbox. Two additions make that exact and prompt:

-- 1. The inserting transaction's id. Outbox ids are handed out when a row is inserted but become
-- visible when its transaction commits, so a reader that kept "the last id seen" would skip a
-- smaller id committed later. Every transaction whose id is below the oldest one still running
-- (pg_snapshot_xmin) is finished, so rows with xid below that horizon are final: the fan-out reads
-- the range [endpoint cursor, horizon) and then moves the cursor to the horizon.
ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS outbox_events_xid_idx ON outbox_events (xid);

-- 2. A wake-up for the delivery loops (they also poll every second, so a lost one only delays).
-- Per statement and without a payload: Postgres folds identical notifications of a transaction.
CREATE OR REPLACE FUNCTION creditflow_outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('creditflow_outbox', '');
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
  FOR EACH STATEMENT EXECUTE FUNCTION creditflow_outbox_notify();
