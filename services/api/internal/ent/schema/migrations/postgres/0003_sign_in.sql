-- 0003_sign_in: OpenID Connect sign-in. A user may carry the identity it
-- signs in with; a token is an API token or a session token that expires.
ALTER TABLE "tokens" ADD COLUMN "kind" character varying NOT NULL DEFAULT 'api', ADD COLUMN "expire_time" timestamptz NULL;
ALTER TABLE "users" ADD COLUMN "oidc_identity" character varying NULL;
CREATE UNIQUE INDEX "users_oidc_identity_key" ON "users" ("oidc_identity");
