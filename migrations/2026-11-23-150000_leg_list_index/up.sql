-- Legs are listed (GET /api/calls?view=legs) in the same order as phone calls: newest first,
-- legs without a start last, keyset-paged by one row comparison (db::listing).
DROP INDEX calls_app_started_idx;
CREATE INDEX calls_app_started_idx
    ON calls (app_id, coalesce(started_at, '-infinity'::timestamptz) DESC, call_id DESC);
