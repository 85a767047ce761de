-- The first 500 characters of a published track's lyrics (from its tags), for search.
ALTER TABLE tracks ADD COLUMN lyrics_excerpt TEXT NULL;
