-- Up Migration
-- Least privilege: the service (API, worker, CLI, ingest) connects as a member of `creditflow_app`,
-- which owns nothing. It cannot UPDATE, DELETE or TRUNCATE the ledger, usage events or published
-- rate-card versions, cannot disable a trigger (ALTER TABLE needs the owner) and cannot set
-- session_replication_role (superuser only): append-only holds even against a bug in our code.
-- Migrations run as the owner. The login role itself (DATABASE_URL's user, its password) is set up
-- by the migrate step (lib/db-roles.ts): a migration never creates a role that can log in.

-- Roles are cluster-wide: another database of the cluster (or a template being built at the same
-- time) may have created it already, or may be creating it right now.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'creditflow_app') THEN
    CREATE ROLE creditflow_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END $$;

-- One made by someone else must not bypass the point of it.
DO $$
BEGIN
  IF (SELECT rolsuper OR rolbypassrls OR rolcreaterole FROM pg_roles WHERE rolname = 'creditflow_app') THEN
    RAISE EXCEPTION 'role creditflow_app must not be superuser, bypassrls or createrole';
  END IF;
END $$;

GRANT USAGE ON SCHEMA public TO creditflow_app;

-- Append-only: written once, never changed by the service.
GRANT SELECT, INSERT ON
  ledger_transactions, ledger_entries, usage_events, rate_cards, usage_corrections, audit_events,
  idempotency_keys, customers, outbox_events, webhook_attempts, sandbox_refunds
TO creditflow_app;

-- State the service updates (balance caches, lifecycles, settings). No DELETE: none is deleted.
GRANT SELECT, INSERT, UPDATE ON
  wallets, credit_lots, holds, hold_lots, payments, payment_methods, auto_topup_rules, refunds,
  api_keys, customer_rate_cards, webhook_endpoints, webhook_deliveries, reconciliation_runs,
  sandbox_charges, sandbox_attempts
TO creditflow_app;

-- Deleted by the code: an abandoned Idempotency-Key claim, and housekeeping's purge.
GRANT SELECT, INSERT, UPDATE, DELETE ON http_idempotency TO creditflow_app;

-- Identity columns need no sequence privilege; serial columns of later tables do.
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO creditflow_app;
-- The trigger functions run with the caller's rights: every table they write (outbox_events) is
-- granted above, so none needs SECURITY DEFINER.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO creditflow_app;

-- Tables created by a migration before this one and not listed above: the default set below.
DO $$
DECLARE t regclass;
BEGIN
  FOR t IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND c.relname <> 'pgmigrations'
              AND NOT has_table_privilege('creditflow_app', c.oid, 'SELECT') LOOP
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO creditflow_app', t);
  END LOOP;
END $$;

-- Tables, sequences and functions the owner creates later (later migrations) are usable at once.
-- A later append-only table revokes UPDATE and DELETE in its own migration; never TRUNCATE, and
-- the migration bookkeeping (pgmigrations) stays the owner's.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO creditflow_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO creditflow_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO creditflow_app;
