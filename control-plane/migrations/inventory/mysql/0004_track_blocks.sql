-- A track an administrator has blocked (a takedown) is never played, whatever its status.
ALTER TABLE tracks ADD COLUMN blocked_reason VARCHAR(500) NULL;
