#!/bin/sh
# Proves that the store sells: places an order as a shopper would, through
# WooCommerce's Store API (a cart, the sample product, checkout with Cash
# on delivery), then deletes it with wp-cli so that the shop's books stay
# clean. It exits 0 printing the order id, or 1 printing
# "order check failed at <step>: <detail>", the line it also writes to its
# termination message for the orchestrator to report.
#
# Steps: store-api (the cart answers, with a Cart-Token; retried for
# ORDER_CHECK_WAIT_SECONDS while the store starts), product, add-item,
# checkout, delete-order.
#
# Inputs, from the Job's environment: WORDPRESS_URL (the server, through
# its Service), PRODUCT_SKU, ADMIN_USER (whom wp-cli acts as), and
# optionally ORDER_CHECK_WAIT_SECONDS (600), ORDER_CHECK_TIMEOUT_SECONDS
# (30, per request), TERMINATION_LOG (/dev/termination-log).
set -eu

api=/wp-json/wc/store/v1
wait_seconds=${ORDER_CHECK_WAIT_SECONDS:-600}
timeout=${ORDER_CHECK_TIMEOUT_SECONDS:-30}
termination_log=${TERMINATION_LOG:-/dev/termination-log}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cart_token=""

log() { printf '%s order check: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# fail reports the step that failed and exits 1.
fail() {
  line="order check failed at $1: $2"
  printf '%s\n' "$line"
  printf '%s\n' "$line" >"$termination_log" 2>/dev/null || true
  exit 1
}

# message_of prints the message of a WooCommerce error answer, or the
# start of any other.
message_of() {
  message=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' "$1" | head -n 1)
  if [ -z "$message" ]; then
    message=$(head -c 200 "$1" | tr -d '\r\n')
  fi
  printf '%s' "$message"
}

# request METHOD PATH [JSON] sends a request to the Store API with the
# cart's token; the answer's body is in $tmp/body and its headers in
# $tmp/headers. It returns 1 with $detail set when the server did not
# answer 2xx.
request() {
  method=$1 path=$2 data=${3:-}
  set -- --silent --show-error --max-time "$timeout" --request "$method" \
    --output "$tmp/body" --dump-header "$tmp/headers" --write-out '%{http_code}' \
    --header 'Accept: application/json'
  if [ -n "$cart_token" ]; then
    set -- "$@" --header "Cart-Token: $cart_token"
  fi
  if [ -n "$data" ]; then
    set -- "$@" --header 'Content-Type: application/json' --data "$data"
  fi
  : >"$tmp/body"
  if ! status=$(curl "$@" "${WORDPRESS_URL}${path}" 2>"$tmp/error"); then
    detail="$method $path: $(tail -n 1 "$tmp/error")"
    return 1
  fi
  case $status in
  2??) return 0 ;;
  esac
  detail="$method $path: HTTP $status: $(message_of "$tmp/body")"
  return 1
}

# The server may still be starting, or WooCommerce still being set up.
log "asking ${WORDPRESS_URL} for a cart"
start=$(date +%s)
until request GET "$api/cart"; do
  waited=$(($(date +%s) - start))
  if [ "$waited" -ge "$wait_seconds" ]; then
    fail store-api "$detail after ${waited}s"
  fi
  sleep 5
done
cart_token=$(sed -n 's/^[Cc][Aa][Rr][Tt]-[Tt][Oo][Kk][Ee][Nn]: *//p' "$tmp/headers" | tr -d '\r' | tail -n 1)
if [ -z "$cart_token" ]; then
  fail store-api "GET $api/cart: the answer has no Cart-Token header"
fi

request GET "$api/products?sku=$PRODUCT_SKU" || fail product "$detail"
# The first id of the list is the first product's.
product=$(sed -n 's/^[^{]*{"id":\([0-9][0-9]*\).*/\1/p' "$tmp/body" | head -n 1)
if [ -z "$product" ]; then
  fail product "GET $api/products?sku=$PRODUCT_SKU: no product with SKU $PRODUCT_SKU"
fi

log "adding product ${product} to the cart"
request POST "$api/cart/add-item" "{\"id\":$product,\"quantity\":1}" || fail add-item "$detail"

log "checking out with Cash on delivery"
address='"first_name":"Order","last_name":"Check","address_1":"1 Main St","city":"Springfield","state":"IL","postcode":"62701","country":"US"'
request POST "$api/checkout" "{\"billing_address\":{$address,\"email\":\"order-check@example.com\"},\"shipping_address\":{$address},\"payment_method\":\"cod\"}" ||
  fail checkout "$detail"
order=$(sed -n 's/.*"order_id":\([0-9][0-9]*\).*/\1/p' "$tmp/body" | head -n 1)
if [ -z "$order" ] || [ "$order" = 0 ]; then
  fail checkout "POST $api/checkout: the answer names no order: $(message_of "$tmp/body")"
fi

log "deleting order ${order}"
if ! out=$(wp wc shop_order delete "$order" --force=true --user="$ADMIN_USER" 2>&1); then
  fail delete-order "wp wc shop_order delete $order: $(printf '%s\n' "$out" | tail -n 1)"
fi

printf '%s\n' "$order"
printf 'order check passed: order %s\n' "$order" >"$termination_log" 2>/dev/null || true
