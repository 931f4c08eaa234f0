-- Up Migration
-- Migrations are forward-only: there is no down section, the ledger is never rolled back.
-- Foundation: customers, wallets, lots, the append-only double-entry ledger, idempotency, API keys.
-- Amounts are bigint micro-credits (1 credit = 1,000,000).

CREATE TABLE IF NOT EXISTS customers (
  id            text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
  name          text,
  metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
  request_hash  text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS wallets (
  customer_id      text PRIMARY KEY REFERENCES customers(id),
  available        bigint NOT NULL DEFAULT 0,
  held             bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
  arrears          bigint NOT NULL DEFAULT 0 CHECK (arrears >= 0),
  overdraft_limit  bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
  version          bigint NOT NULL DEFAULT 0,
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS credit_lots (
  id                 uuid PRIMARY KEY,
  customer_id        text NOT NULL REFERENCES customers(id),
  kind               text NOT NULL CHECK (kind IN ('purchased', 'promotional', 'allowance', 'adjustment')),
  priority           integer NOT NULL,
  original           bigint NOT NULL CHECK (original > 0),
  remaining          bigint NOT NULL CHECK (remaining >= 0),
  held               bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
  effective_at       timestamptz NOT NULL,
  expires_at         timestamptz,
  rollover_cap       bigint CHECK (rollover_cap >= 0),
  recurrence         jsonb,
  cost_amount_minor  bigint CHECK (cost_amount_minor >= 0),
  cost_currency      text,
  payment_reference  text,
  reason             text,
  status             text NOT NULL DEFAULT 'active'
                     CHECK (status IN ('active', 'depleted', 'expired', 'voided', 'refunded')),
  created_at         timestamptz NOT NULL DEFAULT now(),
  CHECK (remaining + held <= original),
  CHECK (expires_at IS NULL OR expires_at > effective_at)
);
CREATE INDEX IF NOT EXISTS credit_lots_customer_idx ON credit_lots (customer_id, status);

-- The ledger. seq gives a stable, gap-tolerant order for cursors.
CREATE TABLE IF NOT EXISTS ledger_transactions (
  id               uuid PRIMARY KEY,
  seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
  customer_id      text NOT NULL REFERENCES customers(id),
  type             text NOT NULL,
  idempotency_key  text NOT NULL UNIQUE,
  reference        text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ledger_transactions_customer_idx ON ledger_transactions (customer_id, seq DESC);

-- account: per customer 'available' | 'held'; system 'issued:<kind>' | 'consumed' | 'expired' | 'voided' | 'refunded'.
-- System accounts have no balance row: their balances are sums over entries, so no hot row serializes writers.
CREATE TABLE IF NOT EXISTS ledger_entries (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id  uuid NOT NULL REFERENCES ledger_transactions(id),
  customer_id     text NOT NULL,
  account         text NOT NULL,
  lot_id          uuid REFERENCES credit_lots(id),
  amount          bigint NOT NULL CHECK (amount <> 0)
);
CREATE INDEX IF NOT EXISTS ledger_entries_tx_idx ON ledger_entries (transaction_id);
CREATE INDEX IF NOT EXISTS ledger_entries_customer_account_idx ON ledger_entries (customer_id, account);

-- Append-only, enforced by the database: no UPDATE, DELETE or TRUNCATE on ledger rows.
CREATE OR REPLACE FUNCTION creditflow_refuse_ledger_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$;

DROP TRIGGER IF EXISTS ledger_transactions_append_only ON ledger_transactions;
CREATE TRIGGER ledger_transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
  FOR EACH ROW EXECUTE FUNCTION creditflow_refuse_ledger_change();
DROP TRIGGER IF EXISTS ledger_transactions_no_truncate ON ledger_transactions;
CREATE TRIGGER ledger_transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
  FOR EACH STATEMENT EXECUTE FUNCTION creditflow_refuse_ledger_change();
DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
  FOR EACH ROW EXECUTE FUNCTION creditflow_refuse_ledger_change();
DROP TRIGGER IF EXISTS ledger_entries_no_truncate ON ledger_entries;
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
  FOR EACH STATEMENT EXECUTE FUNCTION creditflow_refuse_ledger_change();

-- Every transaction's entries sum to zero. The ledger writes all entries of a transaction in one
-- INSERT statement, so a statement-level check over the inserted rows is exact and O(rows).
CREATE OR REPLACE FUNCTION creditflow_check_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE bad uuid;
BEGIN
  SELECT transaction_id INTO bad FROM new_entries GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'ledger transaction % is unbalanced', bad USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS ledger_entries_balanced ON ledger_entries;
CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT EXECUTE FUNCTION creditflow_check_balanced();

-- Idempotency: one key, one request hash, one stored result. Kept at least 7 days.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  key           text PRIMARY KEY,
  request_hash  text NOT NULL,
  result        jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
  id           text PRIMARY KEY,
  key_hash     text NOT NULL UNIQUE,
  role         text NOT NULL CHECK (role IN ('admin', 'service', 'support', 'viewer')),
  customer_id  text,
  name         text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at   timestamptz,
  CHECK (role <> 'viewer' OR customer_id IS NOT NULL)
);
