-- Dialpad ids of parties are int64 in call events but strings in its other APIs, and a payload
-- a little off the documented shape must still become a call: the tolerant reader keeps such
-- ids as text (an int64 in canonical decimal, else the string as sent). The party JSON columns
-- already held them as strings; these two columns now do too.
ALTER TABLE calls ALTER COLUMN target_id TYPE text USING target_id::text;
ALTER TABLE messages ALTER COLUMN sender_id TYPE text USING sender_id::text;
