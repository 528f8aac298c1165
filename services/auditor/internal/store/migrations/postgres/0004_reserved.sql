-- 0004: reserved for the admin API's migration (branch adminfix); it does
-- nothing here. Migrations are numbered without gaps: when that branch's
-- 0004 lands, this file is removed in its favour.
SELECT 1;
