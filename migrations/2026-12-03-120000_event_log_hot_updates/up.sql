-- Completing an event rewrites its row (status, attempts, processed_at). With pages filled to
-- the brim the new row version lands on another page and every index of webhook_events gets
-- a new entry; with room left in the page it is a HOT update, which touches no index (no
-- indexed column changes). And with the payload out of line (TOAST), the rewritten row is
-- ~150 bytes instead of the whole payload: an unchanged TOASTed value is not copied.
ALTER TABLE webhook_events SET (fillfactor = 80, toast_tuple_target = 128);
