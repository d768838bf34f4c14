ALTER TABLE oauth_states DROP COLUMN replace_company;
DROP TABLE connect_links;
