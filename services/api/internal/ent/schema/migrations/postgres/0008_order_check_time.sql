-- 0008_order_check_time: when the store's order check last passed, from
-- the status events that carry it.
ALTER TABLE "stores" ADD COLUMN "order_check_time" timestamptz NULL;
