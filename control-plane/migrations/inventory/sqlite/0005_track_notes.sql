-- What processing left out of a published track without rejecting it (a cover art too large
-- to use): a JSON array of {code, message}.
ALTER TABLE tracks ADD COLUMN notes TEXT NULL;
