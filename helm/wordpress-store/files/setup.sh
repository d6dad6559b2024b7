#!/bin/sh
# Installs WordPress and WooCommerce into the store's database and wp-content
# volume. Every step checks before it acts, so running the script again (a
# retry, the Job of the next release revision) changes nothing that exists.
# Settings the store owner may change later (currency, payment methods,
# shipping, the sample product) are applied only until the first run
# completes.
#
# Inputs, from the Job's environment: WORDPRESS_DB_* (wp-config.php reads
# them), STORE_URL, STORE_TITLE, ADMIN_USER, ADMIN_PASSWORD, ADMIN_EMAIL,
# WOOCOMMERCE_VERSION, STORE_CURRENCY, PRODUCT_NAME, PRODUCT_SKU,
# PRODUCT_PRICE, PRODUCT_DESCRIPTION.
set -eu
cd /var/www/html

log() { printf '%s setup: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# The database may still be initialising on a first install.
log "waiting for the database at ${WORDPRESS_DB_HOST}"
tries=0
# The single quotes keep the PHP code's $e from the shell.
# shellcheck disable=SC2016
until php -r '
  mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
  try {
    new mysqli(getenv("WORDPRESS_DB_HOST"), getenv("WORDPRESS_DB_USER"), getenv("WORDPRESS_DB_PASSWORD"), getenv("WORDPRESS_DB_NAME"));
  } catch (Throwable $e) {
    fwrite(STDERR, $e->getMessage() . "\n");
    exit(1);
  }'; do
  tries=$((tries + 1))
  if [ "$tries" -ge 120 ]; then
    log "the database did not answer within 10 minutes" >&2
    exit 1
  fi
  sleep 5
done

if wp core is-installed; then
  log "WordPress is installed; applying pending database updates"
  wp core update-db
else
  log "installing WordPress"
  wp core install --url="$STORE_URL" --title="$STORE_TITLE" \
    --admin_user="$ADMIN_USER" --admin_password="$ADMIN_PASSWORD" \
    --admin_email="$ADMIN_EMAIL" --skip-email
fi

# The platform owns the URL and the title: converge them on every run.
wp option update home "$STORE_URL"
wp option update siteurl "$STORE_URL"
wp option update blogname "$STORE_TITLE"

if ! wp plugin is-installed woocommerce; then
  log "installing WooCommerce ${WOOCOMMERCE_VERSION:-(latest)}"
  if [ -n "$WOOCOMMERCE_VERSION" ]; then
    wp plugin install woocommerce --version="$WOOCOMMERCE_VERSION" --activate
  else
    wp plugin install woocommerce --activate
  fi
elif ! wp plugin is-active woocommerce; then
  wp plugin activate woocommerce
fi
wp wc update

# Shipping: free shipping in the zone "Locations not covered by your other
# zones" (id 0), so that an order of the physical sample product gets a
# shipping line. Without any shipping method WooCommerce takes orders
# without shipping, until the owner adds one somewhere. Applied once per
# store, apart from the other settings, so that stores set up before it
# get it too; later runs keep the owner's changes.
if [ "$(wp option get storeprov_shipping_completed 2>/dev/null || true)" != "yes" ]; then
  if ! wp wc shipping_zone_method list 0 --user="$ADMIN_USER" --field=method_id | grep -qx free_shipping; then
    log "adding free shipping to the zone of locations not covered by other zones"
    wp wc shipping_zone_method create 0 --user="$ADMIN_USER" --method_id=free_shipping --enabled=true
  fi
  wp option update storeprov_shipping_completed yes
fi

if [ "$(wp option get storeprov_setup_completed 2>/dev/null || true)" = "yes" ]; then
  log "store settings were applied by an earlier run; keeping the owner's changes"
  exit 0
fi

log "applying the initial store settings"
wp rewrite structure '/%postname%/'
wp wc tool run install_pages --user="$ADMIN_USER"
wp option update woocommerce_currency "$STORE_CURRENCY"
# New WooCommerce stores start in "coming soon" mode, hidden from visitors.
wp option update woocommerce_coming_soon no
wp option update woocommerce_cod_settings --format=json \
  '{"enabled":"yes","title":"Cash on delivery","description":"Pay with cash upon delivery.","instructions":"Pay with cash upon delivery.","enable_for_methods":[],"enable_for_virtual":"yes"}'

if [ -z "$(wp wc product list --user="$ADMIN_USER" --sku="$PRODUCT_SKU" --field=id)" ]; then
  log "creating the product ${PRODUCT_SKU}"
  wp wc product create --user="$ADMIN_USER" --name="$PRODUCT_NAME" --type=simple \
    --status=publish --sku="$PRODUCT_SKU" --regular_price="$PRODUCT_PRICE" \
    --description="$PRODUCT_DESCRIPTION"
fi

wp option update storeprov_setup_completed yes
log "done: ${STORE_URL}"
