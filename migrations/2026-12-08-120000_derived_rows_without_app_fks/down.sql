ALTER TABLE calls ADD CONSTRAINT calls_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps(id);
ALTER TABLE logical_calls ADD CONSTRAINT logical_calls_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps(id);
ALTER TABLE voicemails ADD CONSTRAINT voicemails_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps(id);
ALTER TABLE messages ADD CONSTRAINT messages_app_id_fkey FOREIGN KEY (app_id) REFERENCES apps(id);
