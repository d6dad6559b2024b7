-- The append-only audit log. Must stay equal to the ent schema in
-- internal/ent/schema (TestMigrationsMatchEntSchema).
CREATE TABLE `audit_entries` (
  `id` integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  `event_id` text NOT NULL,
  `action` text NOT NULL,
  `actor` text NOT NULL,
  `store_id` text NOT NULL,
  `store_owner` text NOT NULL,
  `time` datetime NOT NULL,
  `detail` text NOT NULL DEFAULT (''),
  `recorded_at` datetime NOT NULL
);
CREATE UNIQUE INDEX `audit_entries_event_id_key` ON `audit_entries` (`event_id`);
CREATE INDEX `auditentry_store_id_time` ON `audit_entries` (`store_id`, `time`);
CREATE INDEX `auditentry_actor_time` ON `audit_entries` (`actor`, `time`);
CREATE INDEX `auditentry_action_time` ON `audit_entries` (`action`, `time`);
CREATE INDEX `auditentry_store_owner_time` ON `audit_entries` (`store_owner`, `time`);
CREATE INDEX `auditentry_time` ON `audit_entries` (`time`);
