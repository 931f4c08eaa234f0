-- Up Migration
-- The ledger's core tables keyed by customer, ready to be distributed by customer_id (Citus):
-- lots, ledger transactions and entries, usage corrections and refunds get primary keys that
-- start with customer_id, and every reference to a lot or a transaction becomes a
-- (customer_id, …) pair, so one customer's rows always reference rows of the same customer.
-- test/integration/sharding-catalog.test.ts checks the rule on the migrated catalog.
DO $$
DECLARE
  r record;
BEGIN
  -- Every single-column foreign key to credit_lots(id) or ledger_transactions(id), whichever
  -- migration made it, from a table with a NOT NULL customer_id.
  CREATE TEMP TABLE customer_rekey ON COMMIT DROP AS
    SELECT c.conrelid::regclass AS tbl, c.conname AS name, c.confrelid::regclass AS target, a.attname AS col
      FROM pg_constraint c
      JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
     WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
       AND c.confrelid IN ('credit_lots'::regclass, 'ledger_transactions'::regclass);
  FOR r IN SELECT * FROM customer_rekey LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = r.tbl AND attname = 'customer_id' AND attnotnull) THEN
      RAISE EXCEPTION '% references % but has no NOT NULL customer_id', r.tbl, r.target;
    END IF;
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tbl, r.name);
  END LOOP;

  ALTER TABLE credit_lots DROP CONSTRAINT credit_lots_pkey, ADD PRIMARY KEY (customer_id, id);
  ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_pkey, ADD PRIMARY KEY (customer_id, id);

  FOR r IN SELECT * FROM customer_rekey LOOP
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (customer_id, %I) REFERENCES %s (customer_id, id)',
                   r.tbl, r.name, r.col, r.target);
  END LOOP;
END $$;

-- Keys embed the customer already; the guard against replays stays idempotency_keys.key.
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_idempotency_key_key,
  ADD CONSTRAINT ledger_transactions_idempotency_key_key UNIQUE (customer_id, idempotency_key);
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey, ADD PRIMARY KEY (customer_id, transaction_id, id);
ALTER TABLE usage_corrections DROP CONSTRAINT usage_corrections_pkey, ADD PRIMARY KEY (customer_id, id);
ALTER TABLE refunds DROP CONSTRAINT refunds_pkey, ADD PRIMARY KEY (customer_id, id);
ALTER TABLE payments DROP CONSTRAINT payments_gateway_key_key,
  ADD CONSTRAINT payments_gateway_key_key UNIQUE (customer_id, gateway_key);
-- Refunds are still looked up by their id alone (workflows carry the refund id).
CREATE INDEX IF NOT EXISTS refunds_id_idx ON refunds (id);
