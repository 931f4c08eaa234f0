-- Up Migration
-- Live balance (GET /v1/customers/:id/balance/stream): every committed change of a wallet's balance
-- wakes the API processes that have a stream open for that customer. Every credit movement (usage,
-- holds, grants, expiry, top-ups, refunds, corrections) updates the wallet row, so one trigger
-- covers them all. NOTIFY is delivered only when the transaction commits, and in commit order.
-- Payload: '<customer id> <wallet version>' (ids are A-Za-z0-9_.:- only, ≤ 128 characters, so the
-- space splits it unambiguously and it stays far below NOTIFY's 8000-byte limit). The version is
-- bumped by every balance update, so a listener can tell a newer state from one it has sent.
CREATE OR REPLACE FUNCTION creditflow_balance_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('creditflow_balance', NEW.customer_id || ' ' || NEW.version);
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS wallets_balance_notify ON wallets;
CREATE TRIGGER wallets_balance_notify AFTER UPDATE ON wallets
  FOR EACH ROW
  WHEN (OLD.available IS DISTINCT FROM NEW.available
        OR OLD.held IS DISTINCT FROM NEW.held
        OR OLD.arrears IS DISTINCT FROM NEW.arrears)
  EXECUTE FUNCTION creditflow_balance_notify();
