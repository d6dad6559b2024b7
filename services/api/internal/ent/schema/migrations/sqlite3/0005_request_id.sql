-- 0005_request_id: the idempotency key of the create that made a store,
-- unique per owner, so that a retried create returns the same store.
ALTER TABLE `stores` ADD COLUMN `request_id` text NULL;
CREATE UNIQUE INDEX `store_owner_request_id` ON `stores` (`owner`, `request_id`);
