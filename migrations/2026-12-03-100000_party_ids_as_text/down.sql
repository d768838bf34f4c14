-- Ids that are not int64 are lost going back.
ALTER TABLE calls ALTER COLUMN target_id TYPE bigint
    USING CASE WHEN target_id ~ '^-?[0-9]{1,18}$' THEN target_id::bigint END;
ALTER TABLE messages ALTER COLUMN sender_id TYPE bigint
    USING CASE WHEN sender_id ~ '^-?[0-9]{1,18}$' THEN sender_id::bigint END;
