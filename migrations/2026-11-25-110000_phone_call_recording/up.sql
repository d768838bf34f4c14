-- What the Node CTI server's call objects carried, on phone calls too (domain::logical_call).
-- Existing phone calls get them when one of their legs next changes, or by a replay.
ALTER TABLE logical_calls
    ADD COLUMN recording_url text,
    ADD COLUMN mos_score double precision;
COMMENT ON COLUMN logical_calls.recording_url IS 'Dialpad recording link of the leg that recorded.';
COMMENT ON COLUMN logical_calls.mos_score IS 'Dialpad MOS call-quality score (1-5) of the answered person leg.';
