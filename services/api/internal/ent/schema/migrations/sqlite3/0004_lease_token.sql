-- 0004_lease_token: the lease token of the newest status event applied to a
-- store, so that an event from a worker fenced out since is ignored.
ALTER TABLE `stores` ADD COLUMN `lease_token` integer NOT NULL DEFAULT (0);
