-- Up Migration
-- HTTP idempotency (Idempotency-Key), one mechanism for every route that takes the header.
-- A request claims its key with a short lease (state 'in_flight'), does its work WITHOUT holding a
-- database connection, then stores its final response ('done'). A second request with the key
-- while the lease runs gets 409; a lease left behind by a crashed process can be taken over once
-- it has passed (the work itself is idempotent underneath: ledger keys, Temporal update ids).
CREATE TABLE IF NOT EXISTS http_idempotency (
  scope         text PRIMARY KEY,
  request_hash  text NOT NULL,
  state         text NOT NULL CHECK (state IN ('in_flight', 'done')),
  owner         uuid NOT NULL,
  lease_until   timestamptz NOT NULL,
  response      jsonb,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  CHECK (state <> 'done' OR response IS NOT NULL)
);
