-- Up Migration
-- Money in: payment methods, payments (purchases and top-ups: one row per gateway charge we ask
-- for), auto top-up rules, and the sandbox gateway's own charges and refunds.
-- Money is bigint minor units; credits are bigint micro-credits.

CREATE TABLE IF NOT EXISTS payment_methods (
  customer_id          text PRIMARY KEY REFERENCES customers(id),
  payment_method       text NOT NULL,
  gateway_customer_id  text,
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- One row per purchase or top-up. `gateway_key` is the idempotency key every charge attempt of
-- this payment sends (derived from the workflow id): one payment, at most one charge.
CREATE TABLE IF NOT EXISTS payments (
  customer_id          text NOT NULL REFERENCES customers(id),
  id                   text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.-]{1,128}$'),
  source               text NOT NULL CHECK (source IN ('purchase', 'topup')),
  status               text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
  credits              bigint NOT NULL CHECK (credits > 0),
  amount_minor         bigint NOT NULL CHECK (amount_minor > 0),
  currency             text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  gateway              text NOT NULL,
  payment_method       text,
  gateway_customer_id  text,
  gateway_key          text NOT NULL UNIQUE,
  workflow_id          text NOT NULL,
  request_hash         text NOT NULL,
  attempts             integer NOT NULL DEFAULT 0,
  payment_reference    text,
  lot_id               uuid REFERENCES credit_lots(id),
  failure_code         text,
  failure_reason       text,
  expires_at           timestamptz,
  reason               text,
  created_at           timestamptz NOT NULL,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, id),
  CHECK (status <> 'succeeded' OR (lot_id IS NOT NULL AND payment_reference IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS payments_topups_idx ON payments (customer_id, created_at) WHERE source = 'topup';
CREATE INDEX IF NOT EXISTS payments_pending_idx ON payments (customer_id) WHERE status = 'pending';

-- One rule per wallet. The state columns are written by the top-up workflow's activities.
CREATE TABLE IF NOT EXISTS auto_topup_rules (
  customer_id           text PRIMARY KEY REFERENCES customers(id),
  enabled               boolean NOT NULL,
  threshold             bigint NOT NULL CHECK (threshold >= 0),
  mode                  text NOT NULL CHECK (mode IN ('fixed', 'target')),
  credits               bigint NOT NULL CHECK (credits > 0),
  unit_price_minor      numeric NOT NULL CHECK (unit_price_minor > 0),
  currency              text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  payment_method        text,
  cooldown_seconds      integer NOT NULL CHECK (cooldown_seconds >= 0),
  max_per_day           integer NOT NULL CHECK (max_per_day >= 1),
  max_attempts          integer NOT NULL CHECK (max_attempts >= 1),
  consecutive_failures  integer NOT NULL DEFAULT 0,
  disabled_reason       text,
  last_topup_at         timestamptz,
  cooldown_until        timestamptz,
  next_seq              bigint NOT NULL DEFAULT 1,
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CHECK (mode <> 'target' OR credits > threshold)
);
CREATE INDEX IF NOT EXISTS auto_topup_rules_enabled_idx ON auto_topup_rules (customer_id) WHERE enabled;

-- The sandbox gateway keeps its charges here, one per idempotency key, like Stripe would.
CREATE TABLE IF NOT EXISTS sandbox_charges (
  id              text PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE,
  request_hash    text NOT NULL,
  customer_id     text NOT NULL,
  payment_method  text NOT NULL,
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  currency        text NOT NULL,
  refunded_minor  bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
  created_at      timestamptz NOT NULL DEFAULT now()
);
-- Attempts per key, so pm_card_flaky fails the first two attempts of each charge.
CREATE TABLE IF NOT EXISTS sandbox_attempts (
  idempotency_key text PRIMARY KEY,
  attempts        integer NOT NULL
);
CREATE TABLE IF NOT EXISTS sandbox_refunds (
  id              text PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE,
  request_hash    text NOT NULL,
  charge_id       text NOT NULL REFERENCES sandbox_charges(id),
  amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
  created_at      timestamptz NOT NULL DEFAULT now()
);
