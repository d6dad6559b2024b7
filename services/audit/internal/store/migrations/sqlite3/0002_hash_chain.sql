-- The hash chain: each entry's hash covers the hash of the entry before it,
-- and the one row of audit_chains holds the head and the retention
-- checkpoint (and is the lock appends take). Entries are unique per
-- (event id, lease token), so each attempt of the orchestrator is kept.
-- Entries recorded before this migration get their hashes when the audit
-- service starts. Must stay equal to the ent schema in internal/ent/schema
-- (TestMigrationsMatchEntSchema).
ALTER TABLE `audit_entries` ADD COLUMN `lease_token` integer NOT NULL DEFAULT (0);
ALTER TABLE `audit_entries` ADD COLUMN `prev_hash` text NOT NULL DEFAULT ('');
ALTER TABLE `audit_entries` ADD COLUMN `hash` text NOT NULL DEFAULT ('');
DROP INDEX `audit_entries_event_id_key`;
CREATE UNIQUE INDEX `auditentry_event_id_lease_token` ON `audit_entries` (`event_id`, `lease_token`);
CREATE TABLE `audit_chains` (
  `id` integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  `head_hash` text NOT NULL DEFAULT (''),
  `head_sequence` integer NOT NULL DEFAULT (0),
  `checkpoint_hash` text NOT NULL DEFAULT (''),
  `checkpoint_sequence` integer NOT NULL DEFAULT (0)
);
INSERT INTO `audit_chains` (`id`) VALUES (1);
