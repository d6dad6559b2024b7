-- 0002_upgrades: the desired chart version and value overrides of a store,
-- set by UpgradeStore, and the action that set its latest generation.
ALTER TABLE "stores" ADD COLUMN "desired_chart_version" character varying NOT NULL DEFAULT '', ADD COLUMN "chart_values" jsonb NULL, ADD COLUMN "last_action" character varying NOT NULL DEFAULT '';
