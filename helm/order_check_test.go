package charts_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// esbuild turns the order check's TypeScript into the JavaScript that
// `medusa build` puts in the image (Node 20 runs no TypeScript). Pinned,
// and run from the Go module proxy.
const esbuild = "github.com/evanw/esbuild/cmd/esbuild@v0.28.2"

// The publishable key and admin token the fake Medusa hands out.
const (
	fakePublishableKey = "pk_order_check_test"
	fakeAdminToken     = "admin-token"
)

// TestOrderCheckScriptReportsTheStepThatFailed runs the Medusa image's
// order check (helm/medusa-image/src/scripts/order-check.ts, as the
// order-check Job runs it) on this machine's Node against a fake Medusa
// server: one that sells, one that refuses the cart, and none at all. A
// failed check exits 1 and prints "order check failed at <step>: <detail>"
// on stdout and in its termination message, which the orchestrator
// reports as the store's OrderCheckFailed. It needs node on PATH: CI has
// it (make test-medusa needs it too); elsewhere the test skips without it.
func TestOrderCheckScriptReportsTheStepThatFailed(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not on PATH; the order check runs on Node (as make test-medusa does)")
		}
		t.Skip("node is not on PATH: install Node.js ^20.19 or >=22.12 to run the order check")
	}
	script := buildOrderCheck(t)

	tests := []struct {
		name string
		// refuse is the path the fake server refuses; down means no
		// server at all.
		refuse string
		down   bool
		// wantExit, wantStdout and wantTermination are what the check
		// exits with, prints and leaves as its termination message.
		wantExit        int
		wantStdout      string
		wantTermination string
		// wantCalls are the requests the server received, in order.
		wantCalls []string
	}{
		{
			name:     "a store that sells: the order is placed and cancelled",
			wantExit: 0, wantStdout: "order_01\n", wantTermination: "order check passed: order_01\n",
			wantCalls: []string{
				"GET /health", "POST /auth/user/emailpass", "GET /admin/api-keys", "GET /store/regions", "GET /store/products",
				"POST /store/carts", "POST /store/carts/cart_01/line-items", "GET /store/shipping-options",
				"POST /store/carts/cart_01/shipping-methods", "POST /store/payment-collections",
				"POST /store/payment-collections/paycol_01/payment-sessions", "POST /store/carts/cart_01/complete",
				"POST /admin/orders/order_01/cancel",
			},
		},
		{
			name: "a server that refuses the cart", refuse: "/store/carts",
			wantExit:        1,
			wantStdout:      "order check failed at create-cart: POST /store/carts: HTTP 400: Publishable key needs to have a sales channel configured\n",
			wantTermination: "order check failed at create-cart: POST /store/carts: HTTP 400: Publishable key needs to have a sales channel configured\n",
			wantCalls: []string{
				"GET /health", "POST /auth/user/emailpass", "GET /admin/api-keys", "GET /store/regions", "GET /store/products",
				"POST /store/carts",
			},
		},
		{
			name: "no server", down: true,
			wantExit:        1,
			wantStdout:      "order check failed at health: GET /health: ECONNREFUSED after 0s\n",
			wantTermination: "order check failed at health: GET /health: ECONNREFUSED after 0s\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			medusa := &fakeMedusa{t: t, refuse: tt.refuse}
			url := serveFake(t, medusa, tt.down)
			termination := filepath.Join(t.TempDir(), "termination-log")
			cmd := exec.Command("node", script)
			cmd.Env = append(os.Environ(),
				"MEDUSA_URL="+url,
				"ADMIN_EMAIL=admin@store.test",
				"ADMIN_PASSWORD=k7QW2MZXJ4P5RT6N",
				"PUBLISHABLE_KEY_TITLE=storeprov",
				"STORE_CURRENCY=usd",
				"ORDER_CHECK_WAIT_SECONDS=0",
				"ORDER_CHECK_TIMEOUT_SECONDS=10",
				"TERMINATION_LOG="+termination,
			)
			stdout, exit := runScript(t, cmd)
			if exit != tt.wantExit {
				t.Errorf("exit status %d, want %d", exit, tt.wantExit)
			}
			if diff := cmp.Diff(tt.wantStdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			got, err := os.ReadFile(termination)
			if err != nil {
				t.Fatalf("no termination message: %v", err)
			}
			if diff := cmp.Diff(tt.wantTermination, string(got)); diff != "" {
				t.Errorf("termination message (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCalls, medusa.received()); diff != "" {
				t.Errorf("requests to the server (-want +got):\n%s", diff)
			}
		})
	}
}

// buildOrderCheck transpiles the order check into a script for node and
// returns its path.
func buildOrderCheck(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("medusa-image", "src", "scripts", "order-check.ts"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "order-check.js")
	cmd := exec.Command("go", "run", esbuild, src, "--format=cjs", "--platform=node", "--target=node20", "--log-level=warning", "--outfile="+out)
	// Outside any module or workspace: go run pkg@version builds the tool
	// from its own go.mod.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cannot transpile %s with %s: %v\n%s", src, esbuild, err, b)
	}
	return out
}

// fakeMedusa answers the Medusa API calls of the order check, as a seeded
// store does (one region in usd, one product in stock, one flat shipping
// option, the system payment provider), except refuse, which it answers
// as Medusa refuses a cart whose publishable key has no sales channel.
type fakeMedusa struct {
	t      *testing.T
	refuse string
	mu     sync.Mutex
	calls  []string
}

func (m *fakeMedusa) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

func (m *fakeMedusa) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.calls = append(m.calls, r.Method+" "+r.URL.Path)
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	answer := func(status int, body any) {
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(body); err != nil && !errors.Is(err, net.ErrClosed) {
			m.t.Errorf("cannot answer %s %s: %v", r.Method, r.URL.Path, err)
		}
	}
	if r.URL.Path == m.refuse {
		answer(http.StatusBadRequest, map[string]any{"type": "invalid_data", "message": "Publishable key needs to have a sales channel configured"})
		return
	}
	path := r.Method + " " + r.URL.Path
	switch {
	case strings.HasPrefix(r.URL.Path, "/admin/") && r.Header.Get("Authorization") != "Bearer "+fakeAdminToken,
		strings.HasPrefix(r.URL.Path, "/store/") && r.Header.Get("X-Publishable-Api-Key") != fakePublishableKey:
		answer(http.StatusUnauthorized, map[string]any{"type": "unauthorized", "message": "Unauthorized"})
		return
	}
	switch path {
	case "GET /health":
		_, _ = w.Write([]byte("OK"))
	case "POST /auth/user/emailpass":
		answer(http.StatusOK, map[string]any{"token": fakeAdminToken})
	case "GET /admin/api-keys":
		answer(http.StatusOK, map[string]any{"api_keys": []any{map[string]any{"id": "apk_01", "title": r.URL.Query().Get("title"), "token": fakePublishableKey, "revoked_at": nil}}})
	case "GET /store/regions":
		answer(http.StatusOK, map[string]any{"regions": []any{map[string]any{"id": "reg_01", "currency_code": "usd", "countries": []any{map[string]any{"iso_2": "us"}}}}})
	case "GET /store/products":
		answer(http.StatusOK, map[string]any{"products": []any{map[string]any{"id": "prod_01", "handle": "storeprov-sample", "variants": []any{map[string]any{
			"id": "variant_01", "manage_inventory": true, "inventory_quantity": 10, "calculated_price": map[string]any{"calculated_amount": 19.99},
		}}}}})
	case "POST /store/carts":
		answer(http.StatusOK, map[string]any{"cart": map[string]any{"id": "cart_01"}})
	case "POST /store/carts/cart_01/line-items", "POST /store/carts/cart_01/shipping-methods":
		answer(http.StatusOK, map[string]any{"cart": map[string]any{"id": "cart_01"}})
	case "GET /store/shipping-options":
		answer(http.StatusOK, map[string]any{"shipping_options": []any{map[string]any{"id": "so_01", "name": "Standard", "price_type": "flat"}}})
	case "POST /store/payment-collections":
		answer(http.StatusOK, map[string]any{"payment_collection": map[string]any{"id": "paycol_01"}})
	case "POST /store/payment-collections/paycol_01/payment-sessions":
		answer(http.StatusOK, map[string]any{"payment_collection": map[string]any{"id": "paycol_01"}})
	case "POST /store/carts/cart_01/complete":
		answer(http.StatusOK, map[string]any{"type": "order", "order": map[string]any{"id": "order_01", "display_id": 1}})
	case "POST /admin/orders/order_01/cancel":
		answer(http.StatusOK, map[string]any{"order": map[string]any{"id": "order_01", "status": "canceled"}})
	default:
		answer(http.StatusNotFound, map[string]any{"type": "not_found", "message": "no route " + path})
	}
}

// runScript runs an order check's script and returns its standard output
// and exit status, logging its standard error; a script that cannot start
// fails the test.
func runScript(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stderr:\n%s", stderr.String())
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("cannot run %s: %v", cmd.Path, err)
	}
	return stdout.String(), 0
}

// serveFake serves h until the test ends and returns its URL; when down,
// the URL is of a port that was just free and that nothing listens on.
func serveFake(t *testing.T, h http.Handler, down bool) string {
	t.Helper()
	srv := httptest.NewServer(h)
	if down {
		srv.Close()
	} else {
		t.Cleanup(srv.Close)
	}
	return srv.URL
}
