// Package e2e drives the whole platform through its REST gateway: the api,
// audit, gateway and two orchestrator processes built from this repository,
// NATS JetStream and the sandbox Kubernetes cluster.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/storeprov/storeprov/deploy/devstack"
	"github.com/storeprov/storeprov/deploy/devstack/devstacktest"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	devstacktest.RemoveBinaries()
	os.Exit(code)
}

// stackConfig is the platform of one test: SQLite with the embedded NATS
// server, or PostgreSQL with the external NATS server when both are set.
type stackConfig struct {
	name                    string
	apiDB, auditDB, natsURL string
	// signIn, when set, runs the development OpenID provider.
	signIn *devstack.DevSignIn
	// orchestratorArgs are extra flags for every orchestrator.
	orchestratorArgs []string
	// kubeconfig the orchestrators use; empty means the sandbox's.
	kubeconfig string
}

func configs(t *testing.T) []stackConfig {
	cs := []stackConfig{{name: "sqlite-embedded-nats"}}
	if pg := os.Getenv(databasetest.PostgresURLEnv); pg != "" {
		c := stackConfig{name: "postgres", apiDB: databasetest.Postgres(t, pg), auditDB: databasetest.Postgres(t, pg)}
		if n := os.Getenv(bustest.URLEnv); n != "" {
			c.name, c.natsURL = "postgres-external-nats", n
		}
		cs = append(cs, c)
	}
	return cs
}

func startStack(t *testing.T, c stackConfig) *devstack.Stack {
	t.Helper()
	return devstacktest.Start(t, devstack.Config{
		DataDir: t.TempDir(), Kubeconfig: sandboxtest.KubeconfigPath(t),
		NATSURL: c.natsURL, NATSPort: -1, APIDatabaseURL: c.apiDB, AuditDatabaseURL: c.auditDB,
		BusPrefix: "e2e" + sandboxtest.RandomSuffix(), Orchestrators: 2, SignIn: c.signIn,
		OrchestratorArgs: c.orchestratorArgs,
	})
}

func TestStoreLifecycleThroughREST(t *testing.T) {
	for _, c := range configs(t) {
		t.Run(c.name, func(t *testing.T) {
			s := startStack(t, c)
			api := &restClient{t: t, base: s.GatewayURL, token: s.Token}

			watch := api.watch()
			defer watch.stop()

			var created store
			api.do("POST", "/v1/stores", `{"displayName":"E2E Shop","engine":"ENGINE_WOOCOMMERCE"}`, 200, &created)
			if created.Phase != "PHASE_PROVISIONING" || created.ID == "" || created.Owner != "admin" {
				t.Fatalf("created store = %+v", created)
			}
			ns := "store-" + created.ID
			sandboxtest.CleanupNamespace(t, ns)

			ready := api.waitPhase(created.ID, "PHASE_READY")
			if !strings.Contains(ready.URL, "store-"+created.ID+".") {
				t.Errorf("READY store URL = %q", ready.URL)
			}
			assertStoreResources(t, ns)

			var list struct{ Stores []store }
			api.do("GET", "/v1/stores", "", 200, &list)
			if len(list.Stores) != 1 || list.Stores[0].ID != created.ID {
				t.Errorf("list = %+v", list.Stores)
			}
			api.do("GET", "/v1/stores?phase=PHASE_READY", "", 200, &list)
			if len(list.Stores) != 1 {
				t.Errorf("READY filter = %+v", list.Stores)
			}

			var deleting store
			api.do("DELETE", "/v1/stores/"+created.ID, "", 200, &deleting)
			if deleting.Phase != "PHASE_DELETING" {
				t.Errorf("DELETE answered phase %s, want PHASE_DELETING", deleting.Phase)
			}
			api.waitPhase(created.ID, "PHASE_DELETED")
			assertNothingLeft(t, ns)

			phases := watch.phasesOf(created.ID, "PHASE_DELETED")
			for _, want := range []string{"PHASE_PROVISIONING", "PHASE_READY", "PHASE_DELETING", "PHASE_DELETED"} {
				if !slices.Contains(phases, want) {
					t.Errorf("watch saw %v, missing %s", phases, want)
				}
			}

			entries := api.waitAudit(created.ID, "deleted")
			want := map[string]string{"create": "admin", "ready": "system:orchestrator", "delete": "admin", "deleted": "system:orchestrator"}
			for action, actor := range want {
				found := false
				for _, e := range entries {
					if e.Action == action {
						found = true
						if e.Actor != actor || e.Time == "" {
							t.Errorf("audit %s by %q at %q, want actor %q", action, e.Actor, e.Time, actor)
						}
					}
				}
				if !found {
					t.Errorf("no audit entry %q in %+v", action, entries)
				}
			}
		})
	}
}

func TestMedusaStoreThroughREST(t *testing.T) {
	s := startStack(t, configs(t)[0])
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}
	var created store
	api.do("POST", "/v1/stores", `{"displayName":"Medusa Shop","engine":"ENGINE_MEDUSA"}`, 200, &created)
	ns := "store-" + created.ID
	sandboxtest.CleanupNamespace(t, ns)
	api.waitPhase(created.ID, "PHASE_READY")
	assertStoreResources(t, ns)
	api.do("DELETE", "/v1/stores/"+created.ID, "", 200, nil)
	api.waitPhase(created.ID, "PHASE_DELETED")
	assertNothingLeft(t, ns)
}

// assertStoreResources checks what a READY store's namespace holds: its
// Helm release, bound volumes, quota, limits, policies and credentials.
func assertStoreResources(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	releases, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"})
	if err != nil || len(releases.Items) == 0 {
		t.Errorf("no Helm release in %s: %v", ns, err)
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(pvcs.Items) == 0 {
		t.Errorf("no volumes in %s: %v", ns, err)
	}
	for _, pvc := range pvcs.Items {
		if pvc.Status.Phase != "Bound" {
			t.Errorf("PVC %s/%s is %s, want Bound", ns, pvc.Name, pvc.Status.Phase)
		}
	}
	quotas, _ := cs.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
	limits, _ := cs.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{})
	policies, _ := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	if len(quotas.Items) != 1 || len(limits.Items) != 1 || len(policies.Items) < 5 {
		t.Errorf("%s has %d quotas, %d limit ranges, %d network policies", ns, len(quotas.Items), len(limits.Items), len(policies.Items))
	}
	for _, name := range []string{"store-database", "store-admin"} {
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("secret %s/%s: %v", ns, name, err)
		}
	}
}

// assertNothingLeft checks a DELETED store left no namespace and no volume.
func assertNothingLeft(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	cs := sandboxtest.Clientset(t)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s after DELETED: %v, want it gone", ns, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pvs, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == ns {
				left = append(left, pv.Name)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("volumes of %s left after DELETED: %v", ns, left)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestBadRequestsThroughREST(t *testing.T) {
	s := startStack(t, configs(t)[0])
	api := &restClient{t: t, base: s.GatewayURL, token: s.Token}
	tests := []struct {
		name, method, path, body string
		token                    string
		status                   int
		contains                 string
	}{
		{"malformed JSON", "POST", "/v1/stores", `{"displayName": "x",`, s.Token, 400, ""},
		{"wrong type", "POST", "/v1/stores", `{"displayName": 5, "engine": "ENGINE_MEDUSA"}`, s.Token, 400, "displayName"},
		{"unknown engine", "POST", "/v1/stores", `{"displayName": "x", "engine": "ENGINE_SHOPIFY"}`, s.Token, 400, "ENGINE_SHOPIFY"},
		{"empty name", "POST", "/v1/stores", `{"displayName": "", "engine": "ENGINE_MEDUSA"}`, s.Token, 400, "store.display_name: is required"},
		{"name too long", "POST", "/v1/stores", `{"displayName": "` + strings.Repeat("n", 64) + `", "engine": "ENGINE_MEDUSA"}`, s.Token, 400, "at most 63"},
		{"missing engine", "POST", "/v1/stores", `{"displayName": "x"}`, s.Token, 400, "store.engine: is required"},
		{"missing token", "GET", "/v1/stores", "", "", 401, "missing API token"},
		{"invalid token", "GET", "/v1/stores", "", "sp_wrong", 401, "invalid API token"},
		{"unknown store", "GET", "/v1/stores/nosuchid", "", s.Token, 404, "nosuchid"},
		{"retry a store that is not failed", "POST", "/v1/stores/nosuchid:retry", "{}", s.Token, 404, "nosuchid"},
		{"bad page token", "GET", "/v1/stores?pageToken=zzz", "", s.Token, 400, "page_token"},
	}
	for _, tt := range tests {
		status, body := api.raw(tt.method, tt.path, tt.body, tt.token)
		var e struct {
			Code    int
			Message string
		}
		_ = json.Unmarshal(body, &e)
		if status != tt.status || !strings.Contains(e.Message, tt.contains) || e.Message == "" {
			t.Errorf("%s: %s %s = %d %s; want %d with a message containing %q", tt.name, tt.method, tt.path, status, body, tt.status, tt.contains)
		}
	}
	var list struct{ Stores []store }
	api.do("GET", "/v1/stores", "", 200, &list)
	if len(list.Stores) != 0 {
		t.Errorf("refused requests wrote stores: %+v", list.Stores)
	}
	status, body := api.raw("GET", "/openapi.json", "", "")
	if status != 200 || !bytes.Contains(body, []byte("/v1/stores")) {
		t.Errorf("OpenAPI document: %d %.200s", status, body)
	}

	// A create retried with the same Idempotency-Key returns the same
	// store; the key reused for another store is refused with 409.
	create := func(body, key string) (int, store) {
		req, err := http.NewRequest("POST", s.GatewayURL+"/v1/stores", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.Token)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st store
		_ = json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}
	code1, first := create(`{"displayName":"Retried","engine":"ENGINE_MEDUSA"}`, "e2e-key-1")
	code2, second := create(`{"displayName":"Retried","engine":"ENGINE_MEDUSA"}`, "e2e-key-1")
	if code1 != 200 || code2 != 200 || first.ID == "" || second.ID != first.ID {
		t.Errorf("create retried with one Idempotency-Key = %d %s then %d %s; want the same store twice", code1, first.ID, code2, second.ID)
	}
	if code, _ := create(`{"displayName":"Another","engine":"ENGINE_MEDUSA"}`, "e2e-key-1"); code != 409 {
		t.Errorf("another store with a used Idempotency-Key = %d, want 409", code)
	}
	sandboxtest.CleanupNamespace(t, "store-"+first.ID)
}

type store struct {
	ID                 string `json:"id"`
	DisplayName        string `json:"displayName"`
	Phase              string `json:"phase"`
	Owner              string `json:"owner"`
	URL                string `json:"url"`
	FailureReason      string `json:"failureReason"`
	FailureMessage     string `json:"failureMessage"`
	ChartVersion       string `json:"chartVersion"`
	Generation         string `json:"generation"`
	ObservedGeneration string `json:"observedGeneration"`
}

type auditEntry struct {
	Action, Actor, StoreID, Time, Detail string
}

type restClient struct {
	t     *testing.T
	base  string
	token string
}

func (c *restClient) raw(method, path, body, token string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *restClient) do(method, path, body string, wantStatus int, into any) {
	c.t.Helper()
	status, b := c.raw(method, path, body, c.token)
	if status != wantStatus {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, status, b, wantStatus)
	}
	if into != nil {
		if err := json.Unmarshal(b, into); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func (c *restClient) waitPhase(id, phase string) store {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var st store
	for time.Now().Before(deadline) {
		c.do("GET", "/v1/stores/"+id, "", 200, &st)
		if st.Phase == phase {
			return st
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("store %s is %s (%s), not %s after 2 minutes", id, st.Phase, st.FailureReason, phase)
	return st
}

func (c *restClient) waitAudit(id, action string) []auditEntry {
	c.t.Helper()
	_, entries := c.waitAuditEntry(id, fmt.Sprintf("%q", action), func(e auditEntry) bool { return e.Action == action })
	return entries
}

// waitAuditEntry waits until the store's audit log has an entry that match
// accepts (what describes it) and returns it with every entry.
func (c *restClient) waitAuditEntry(id, what string, match func(auditEntry) bool) (auditEntry, []auditEntry) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var resp struct{ Entries []auditEntry }
	for time.Now().Before(deadline) {
		c.do("GET", "/v1/auditEntries?storeId="+id, "", 200, &resp)
		for _, e := range resp.Entries {
			if match(e) {
				return e, resp.Entries
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("no audit entry %s for %s: %+v", what, id, resp.Entries)
	return auditEntry{}, nil
}

// watcher reads the streaming watch endpoint in the background.
type watcher struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	seen   map[string][]string
	done   chan struct{}
}

func (c *restClient) watch() *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{cancel: cancel, seen: map[string][]string{}, done: make(chan struct{})}
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/stores:watch", nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req) //nolint:bodyclose // the reading goroutine below closes it
	if err != nil {
		c.t.Fatalf("watch: %v", err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		c.t.Fatalf("watch: %s", resp.Status)
	}
	go func() {
		defer close(w.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			var ev struct {
				Result struct {
					Store            store
					SnapshotComplete bool `json:"snapshotComplete"`
				}
			}
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Result.Store.ID != "" {
				w.mu.Lock()
				w.seen[ev.Result.Store.ID] = append(w.seen[ev.Result.Store.ID], ev.Result.Store.Phase)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// phasesOf returns the phases seen for id, waiting a little for last.
func (w *watcher) phasesOf(id, last string) []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		phases := append([]string(nil), w.seen[id]...)
		w.mu.Unlock()
		if slices.Contains(phases, last) || time.Now().After(deadline) {
			return phases
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}
