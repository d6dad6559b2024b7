package charts_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The cart token and ids the fake WooCommerce hands out.
const (
	fakeCartToken = "cart-token-01"
	fakeProductID = 17
	fakeOrderID   = 42
)

// TestWooCommerceOrderCheckReportsTheStepThatFailed runs the WordPress
// chart's order check (wordpress-store/files/order-check.sh, as the
// order-check Job runs it) with this machine's sh and curl against a fake
// WooCommerce Store API, with a fake wp-cli on PATH that records how it
// was called: a store that sells, one that refuses the product, one whose
// checkout refuses Cash on delivery, one where the order cannot be
// deleted, and no server at all. A failed check exits 1 and prints
// "order check failed at <step>: <detail>" on stdout and in its
// termination message, which the orchestrator reports as the store's
// OrderCheckFailed. It needs curl on PATH (the Job's wp-cli image has
// it); CI has it, elsewhere the test skips without it.
func TestWooCommerceOrderCheckReportsTheStepThatFailed(t *testing.T) {
	for _, tool := range []string{"sh", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not on PATH; the WooCommerce order check runs on sh and curl", tool)
			}
			t.Skipf("%s is not on PATH: the WooCommerce order check runs on sh and curl", tool)
		}
	}
	script, err := filepath.Abs(filepath.Join("wordpress-store", "files", "order-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	const sells = "GET /wp-json/wc/store/v1/cart"
	tests := []struct {
		name string
		// refuse is the request the fake server refuses; down means no
		// server at all; wpFails makes wp-cli fail.
		refuse  string
		down    bool
		wpFails bool
		// wantExit and wantLine are what the check exits with and prints
		// (the same line is its termination message).
		wantExit int
		wantLine string
		// wantCalls are the requests the server received, in order;
		// wantWP how wp-cli was called.
		wantCalls []string
		wantWP    string
	}{
		{
			name:     "a store that sells: the order is placed and deleted",
			wantExit: 0, wantLine: "42",
			wantCalls: []string{sells, "GET /wp-json/wc/store/v1/products?sku=storeprov-sample",
				"POST /wp-json/wc/store/v1/cart/add-item", "POST /wp-json/wc/store/v1/checkout"},
			wantWP: "wc shop_order delete 42 --force=true --user=admin\n",
		},
		{
			name: "a store that refuses the product", refuse: "POST /wp-json/wc/store/v1/cart/add-item",
			wantExit: 1,
			wantLine: "order check failed at add-item: POST /wp-json/wc/store/v1/cart/add-item: HTTP 400: Sorry, this product cannot be purchased.",
			wantCalls: []string{sells, "GET /wp-json/wc/store/v1/products?sku=storeprov-sample",
				"POST /wp-json/wc/store/v1/cart/add-item"},
		},
		{
			name: "a checkout without Cash on delivery", refuse: "POST /wp-json/wc/store/v1/checkout",
			wantExit: 1,
			wantLine: "order check failed at checkout: POST /wp-json/wc/store/v1/checkout: HTTP 400: Sorry, this product cannot be purchased.",
			wantCalls: []string{sells, "GET /wp-json/wc/store/v1/products?sku=storeprov-sample",
				"POST /wp-json/wc/store/v1/cart/add-item", "POST /wp-json/wc/store/v1/checkout"},
		},
		{
			name: "an order wp-cli cannot delete", wpFails: true,
			wantExit: 1,
			wantLine: "order check failed at delete-order: wp wc shop_order delete 42: Error: Error establishing a database connection.",
			wantCalls: []string{sells, "GET /wp-json/wc/store/v1/products?sku=storeprov-sample",
				"POST /wp-json/wc/store/v1/cart/add-item", "POST /wp-json/wc/store/v1/checkout"},
			wantWP: "wc shop_order delete 42 --force=true --user=admin\n",
		},
		{
			name: "no server", down: true,
			wantExit: 1,
			wantLine: "order check failed at store-api: GET /wp-json/wc/store/v1/cart: curl: (7) ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			woo := &fakeWooCommerce{t: t, refuse: tt.refuse}
			url := serveFake(t, woo, tt.down)
			dir := t.TempDir()
			termination := filepath.Join(dir, "termination-log")
			wpCalls := filepath.Join(dir, "wp-calls")
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			fakeWP := "#!/bin/sh\necho \"$*\" >>\"$WP_CALLS\"\n"
			if tt.wpFails {
				fakeWP += "echo 'Error: Error establishing a database connection.' >&2\nexit 1\n"
			} else {
				fakeWP += "echo 'Success: Deleted shop_order 42.'\n"
			}
			if err := os.WriteFile(filepath.Join(bin, "wp"), []byte(fakeWP), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", script)
			cmd.Env = append(os.Environ(),
				"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
				"WP_CALLS="+wpCalls,
				"WORDPRESS_URL="+url,
				"ADMIN_USER=admin",
				"PRODUCT_SKU=storeprov-sample",
				"ORDER_CHECK_WAIT_SECONDS=0",
				"ORDER_CHECK_TIMEOUT_SECONDS=10",
				"TERMINATION_LOG="+termination,
			)
			stdout, exit := runScript(t, cmd)
			if exit != tt.wantExit {
				t.Errorf("exit status %d, want %d", exit, tt.wantExit)
			}
			got, err := os.ReadFile(termination)
			if err != nil {
				t.Fatalf("no termination message: %v", err)
			}
			wantTermination := tt.wantLine
			if exit == 0 {
				wantTermination = "order check passed: order " + tt.wantLine
			}
			if tt.down {
				// curl's own words follow, with timings.
				if !strings.HasPrefix(stdout, tt.wantLine) || !strings.HasPrefix(string(got), tt.wantLine) {
					t.Errorf("stdout %q and termination message %q, want both to start with %q", stdout, got, tt.wantLine)
				}
			} else {
				if diff := cmp.Diff(tt.wantLine+"\n", stdout); diff != "" {
					t.Errorf("stdout (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantTermination+"\n", string(got)); diff != "" {
					t.Errorf("termination message (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.wantCalls, woo.received()); diff != "" {
				t.Errorf("requests to the server (-want +got):\n%s", diff)
			}
			calls, _ := os.ReadFile(wpCalls)
			if diff := cmp.Diff(tt.wantWP, string(calls)); diff != "" {
				t.Errorf("wp-cli calls (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeWooCommerce answers the Store API calls of the order check as a
// store set up by the chart does (one product, Cash on delivery), except
// refuse, which it answers as WooCommerce refuses a product that cannot
// be bought. Every call after the first must carry the cart's token, and
// the checkout must ask for Cash on delivery with the addresses a
// checkout needs.
type fakeWooCommerce struct {
	t      *testing.T
	refuse string
	mu     sync.Mutex
	calls  []string
}

func (m *fakeWooCommerce) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *fakeWooCommerce) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call := r.Method + " " + r.URL.RequestURI()
	m.mu.Lock()
	first := len(m.calls) == 0
	m.calls = append(m.calls, call)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	answer := func(status int, body any) {
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(body); err != nil && !errors.Is(err, net.ErrClosed) {
			m.t.Errorf("cannot answer %s: %v", call, err)
		}
	}
	refuse := func(code, message string) {
		answer(http.StatusBadRequest, map[string]any{"code": code, "message": message, "data": map[string]any{"status": 400}})
	}
	if call == m.refuse {
		refuse("woocommerce_rest_cart_product_is_not_purchasable", "Sorry, this product cannot be purchased.")
		return
	}
	if !first && r.Header.Get("Cart-Token") != fakeCartToken {
		answer(http.StatusForbidden, map[string]any{"code": "woocommerce_rest_missing_nonce", "message": "Missing the Nonce header.", "data": map[string]any{"status": 401}})
		return
	}
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			refuse("rest_invalid_json", "Invalid JSON body passed.")
			return
		}
	}
	switch call {
	case "GET /wp-json/wc/store/v1/cart":
		w.Header().Set("Cart-Token", fakeCartToken)
		answer(http.StatusOK, map[string]any{"items": []any{}, "needs_shipping": true})
	case "GET /wp-json/wc/store/v1/products?sku=storeprov-sample":
		answer(http.StatusOK, []any{map[string]any{"id": fakeProductID, "name": "Sample product", "sku": "storeprov-sample",
			"variations": []any{map[string]any{"id": 99}}}})
	case "POST /wp-json/wc/store/v1/cart/add-item":
		if in["id"] != float64(fakeProductID) || in["quantity"] != float64(1) {
			refuse("woocommerce_rest_cart_invalid_product", "This product cannot be added to the cart.")
			return
		}
		answer(http.StatusCreated, map[string]any{"items_count": 1})
	case "POST /wp-json/wc/store/v1/checkout":
		billing, _ := in["billing_address"].(map[string]any)
		shipping, _ := in["shipping_address"].(map[string]any)
		if in["payment_method"] != "cod" || billing["email"] == nil || billing["country"] != "US" || shipping["postcode"] == nil {
			refuse("woocommerce_rest_checkout_invalid_payment_method", "Cash on delivery and the addresses are required.")
			return
		}
		answer(http.StatusOK, map[string]any{"order_id": fakeOrderID, "status": "processing", "customer_id": 0,
			"payment_result": map[string]any{"payment_status": "success"}})
	default:
		answer(http.StatusNotFound, map[string]any{"code": "rest_no_route", "message": "No route was found matching the URL and request method."})
	}
}
