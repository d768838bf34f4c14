ALTER TABLE webhook_events RESET (fillfactor, toast_tuple_target);
