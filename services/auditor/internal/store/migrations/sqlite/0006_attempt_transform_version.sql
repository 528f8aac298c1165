-- 0006: the version (12 hex digits) of the destination's transformation
-- that produced the delivered body of each attempt; empty when the
-- destination has none. With the stored payload it tells what was sent.

ALTER TABLE attempts ADD COLUMN transform_version text NOT NULL DEFAULT '';
