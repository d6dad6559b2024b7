-- 0002_upgrades: the desired chart version and value overrides of a store,
-- set by UpgradeStore, and the action that set its latest generation.
ALTER TABLE `stores` ADD COLUMN `desired_chart_version` text NOT NULL DEFAULT ('');
ALTER TABLE `stores` ADD COLUMN `chart_values` json NULL;
ALTER TABLE `stores` ADD COLUMN `last_action` text NOT NULL DEFAULT ('');
