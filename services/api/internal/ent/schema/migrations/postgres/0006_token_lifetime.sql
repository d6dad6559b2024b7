-- 0006_token_lifetime: when an API token was last used. API tokens issued
-- from now on get an expire_time; older ones (expire_time NULL) expire at
-- create_time plus the api's --token-max-ttl.
ALTER TABLE "tokens" ADD COLUMN "last_use_time" timestamptz NULL;
