-- Processing stage and progress, top tags and cover-art thumbnails of a track.
ALTER TABLE tracks ADD COLUMN stage VARCHAR(32) NULL;
ALTER TABLE tracks ADD COLUMN progress DOUBLE NULL;
ALTER TABLE tracks ADD COLUMN top_tags TEXT NULL;
ALTER TABLE tracks ADD COLUMN artwork TEXT NULL;
