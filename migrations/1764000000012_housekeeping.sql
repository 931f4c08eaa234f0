-- Up Migration
-- Housekeeping purges stored HTTP replies (Idempotency-Key) past their retention, oldest first, in
-- bounded batches: the index keeps each batch a range scan instead of a scan of the whole table.
CREATE INDEX IF NOT EXISTS http_idempotency_created_idx ON http_idempotency (created_at);
