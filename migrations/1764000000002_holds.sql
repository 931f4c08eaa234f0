-- Up Migration
-- Holds: reservations of credits for long jobs, owned by a reservation workflow each.
-- Money moves only through the ledger (accounts 'available' ↔ 'held'); these rows are caches of
-- what each hold reserves from which lot, written under the wallet lock like lots.

CREATE TABLE IF NOT EXISTS holds (
  customer_id  text NOT NULL REFERENCES customers(id),
  id           text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.:-]{1,128}$'),
  workflow_id  text NOT NULL,
  amount       bigint NOT NULL CHECK (amount >= 0),
  held         bigint NOT NULL CHECK (held >= 0),
  captured     bigint NOT NULL DEFAULT 0 CHECK (captured >= 0),
  released     bigint NOT NULL DEFAULT 0 CHECK (released >= 0),
  status       text NOT NULL CHECK (status IN ('active', 'settled', 'released', 'expired')),
  expires_at   timestamptz NOT NULL,
  metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, id)
);
CREATE INDEX IF NOT EXISTS holds_active_expiry_idx ON holds (expires_at) WHERE status = 'active';

CREATE TABLE IF NOT EXISTS hold_lots (
  customer_id  text NOT NULL,
  hold_id      text NOT NULL,
  lot_id       uuid NOT NULL REFERENCES credit_lots(id),
  held         bigint NOT NULL CHECK (held >= 0),
  PRIMARY KEY (customer_id, hold_id, lot_id),
  FOREIGN KEY (customer_id, hold_id) REFERENCES holds(customer_id, id)
);
