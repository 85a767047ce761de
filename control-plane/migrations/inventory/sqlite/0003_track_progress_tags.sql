-- Processing stage and progress, top tags and cover-art thumbnails of a track.
ALTER TABLE tracks ADD COLUMN stage TEXT;
ALTER TABLE tracks ADD COLUMN progress REAL;
ALTER TABLE tracks ADD COLUMN top_tags TEXT;
ALTER TABLE tracks ADD COLUMN artwork TEXT;
