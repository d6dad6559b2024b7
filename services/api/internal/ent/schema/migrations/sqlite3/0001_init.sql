-- 0001_init: users, API tokens, stores and the outbox. Matches the ent schema
-- (TestMigrationsMatchSchema checks it).
CREATE TABLE `outboxes` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `subject` text NOT NULL, `msg_id` text NOT NULL, `payload` blob NOT NULL, `message_type` text NOT NULL, `create_time` datetime NOT NULL, `sent_time` datetime NULL);
CREATE INDEX `outbox_sent_time_id` ON `outboxes` (`sent_time`, `id`);
CREATE TABLE `stores` (`id` text NOT NULL, `display_name` text NOT NULL, `engine` text NOT NULL, `owner` text NOT NULL, `phase` text NOT NULL, `failure_reason` text NOT NULL DEFAULT (''), `failure_message` text NOT NULL DEFAULT (''), `url` text NOT NULL DEFAULT (''), `chart_version` text NOT NULL DEFAULT (''), `generation` integer NOT NULL DEFAULT (1), `observed_generation` integer NOT NULL DEFAULT (0), `status_time` datetime NULL, `create_time` datetime NOT NULL, `update_time` datetime NOT NULL, PRIMARY KEY (`id`));
CREATE INDEX `store_owner_phase` ON `stores` (`owner`, `phase`);
CREATE INDEX `store_create_time_id` ON `stores` (`create_time`, `id`);
CREATE TABLE `tokens` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `hash` text NOT NULL, `description` text NOT NULL DEFAULT (''), `create_time` datetime NOT NULL, `user_tokens` integer NOT NULL, CONSTRAINT `tokens_users_tokens` FOREIGN KEY (`user_tokens`) REFERENCES `users` (`id`) ON DELETE NO ACTION);
CREATE UNIQUE INDEX `tokens_hash_key` ON `tokens` (`hash`);
CREATE TABLE `users` (`id` integer NOT NULL PRIMARY KEY AUTOINCREMENT, `name` text NOT NULL, `admin` bool NOT NULL DEFAULT (false), `store_quota` integer NOT NULL DEFAULT (5), `create_time` datetime NOT NULL);
CREATE UNIQUE INDEX `users_name_key` ON `users` (`name`);
