package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/storeprov/storeprov/deploy/devstack"
)

// run is one benchmark run: the platform, the cluster and the figures.
type run struct {
	cfg    Config
	stack  *devstack.Stack
	kube   kubernetes.Interface
	spans  *spanCollector
	report *Report
	// users are the run's users: the first creates the measured stores,
	// all of them share the latency runs.
	users []*client
	// stores are the platform's stores the run made and has not deleted;
	// baselines the helm CLI's releases (their namespaces).
	stores    []string
	owner     map[string]*client
	baselines []string
	// values are the Helm values the platform gave its first store, with
	// its id replaced by storeIDMark; the helm CLI installs them.
	values  []byte
	chart   string
	secrets []corev1.Secret
	// orchestratorsOff is set once the latency runs stopped the
	// orchestrators for good: their creates must never be provisioned.
	orchestratorsOff bool
}

// client calls the REST API with one user's token.
type client struct {
	base, token, user string
	http              *http.Client
}

// store is a store as the REST API returns it.
type store struct {
	ID             string `json:"id"`
	Phase          string `json:"phase"`
	FailureReason  string `json:"failureReason"`
	FailureMessage string `json:"failureMessage"`
	Namespace      string `json:"namespace"`
}

// newUsers makes n users with a quota that no measurement reaches, each
// with a token of its own, so per-user rate limits do not decide the
// latency figures.
func newUsers(ctx context.Context, s *devstack.Stack, n int) ([]*client, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	admin := &client{base: s.GatewayURL, token: s.Token, user: "admin", http: hc}
	users := []*client{admin}
	for i := range n {
		name := fmt.Sprintf("bench-%d", i+1)
		var tok struct{ Token string }
		body := fmt.Sprintf(`{"user":%q,"storeQuota":100000,"description":"benchmark"}`, name)
		if err := admin.call(ctx, "POST", "/v1/tokens", body, &tok); err != nil {
			return nil, fmt.Errorf("cannot create user %s: %w", name, err)
		}
		u := &client{base: s.GatewayURL, token: tok.Token, user: name, http: hc}
		// The gateway counts a token's calls against its address's limit
		// of unauthenticated calls until one succeeds: use each once, one
		// at a time, so that a burst is not refused as a flood of them.
		if err := u.call(ctx, "GET", "/v1/stores?pageSize=1", "", nil); err != nil {
			return nil, fmt.Errorf("user %s cannot list its stores: %w", name, err)
		}
		users = append(users, u)
	}
	return users, nil
}

// call makes one request and decodes a 200 answer into into; any other
// status is an error quoting the answer.
func (c *client) call(ctx context.Context, method, path, body string, into any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// create submits a WooCommerce store as c and returns its id.
func (c *client) create(ctx context.Context, name string) (string, error) {
	var st store
	body := fmt.Sprintf(`{"displayName":%q,"engine":"ENGINE_WOOCOMMERCE"}`, name)
	if err := c.call(ctx, "POST", "/v1/stores", body, &st); err != nil {
		return "", err
	}
	return st.ID, nil
}

// list returns every store the admin sees, by id.
func (r *run) list(ctx context.Context) (map[string]store, error) {
	var page struct {
		Stores        []store
		NextPageToken string
	}
	out := map[string]store{}
	token := ""
	for {
		if err := r.users[0].call(ctx, "GET", "/v1/stores?pageSize=500&pageToken="+token, "", &page); err != nil {
			return nil, err
		}
		for _, st := range page.Stores {
			out[st.ID] = st
		}
		if page.NextPageToken == "" {
			return out, nil
		}
		token, page.NextPageToken = page.NextPageToken, ""
	}
}

// waitPhase polls the stores until each is in phase, and returns when
// each got there, measured from start. A store that FAILED, or a wait
// past the form's Settle, is an error naming the stores.
func (r *run) waitPhase(ctx context.Context, ids []string, phase string, start time.Time, every time.Duration) (map[string]time.Duration, error) {
	reached := map[string]time.Duration{}
	deadline := time.Now().Add(r.cfg.Form.Settle)
	for {
		all, err := r.list(ctx)
		if err != nil {
			return nil, err
		}
		at := time.Since(start)
		var pending []string
		for _, id := range ids {
			if _, done := reached[id]; done {
				continue
			}
			st, ok := all[id]
			switch {
			case st.Phase == phase || (!ok && phase == "PHASE_DELETED"):
				reached[id] = at
			case st.Phase == "PHASE_FAILED":
				return nil, fmt.Errorf("store %s FAILED: %s %s", id, st.FailureReason, st.FailureMessage)
			default:
				pending = append(pending, id+" "+st.Phase)
			}
		}
		if len(pending) == 0 {
			return reached, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("after %s, %d stores are not %s: %v", r.cfg.Form.Settle, len(pending), phase, pending)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(every):
		}
	}
}

// createAll submits n stores at once and returns their
// ids in submission order and when the first was sent.
func (r *run) createAll(ctx context.Context, n int, name string) ([]string, time.Time, error) {
	ids := make([]string, n)
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	// Spread over the users, so that no user's rate limit decides a
	// burst; each store is deleted by its owner.
	users := r.users[1:]
	for i := range n {
		wg.Go(func() { ids[i], errs[i] = users[i%len(users)].create(ctx, fmt.Sprintf("%s %d", name, i+1)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, start, err
		}
	}
	if r.owner == nil {
		r.owner = map[string]*client{}
	}
	for i, id := range ids {
		r.owner[id] = users[i%len(users)]
	}
	r.stores = append(r.stores, ids...)
	return ids, start, nil
}

// deleteAll deletes the stores at once, each by its owner.
func (r *run) deleteAll(ctx context.Context, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { errs[i] = r.owner[id].call(ctx, "DELETE", "/v1/stores/"+id, "", nil) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	r.forget(ids)
	return nil
}

func (r *run) forget(ids []string) {
	gone := map[string]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	kept := r.stores[:0]
	for _, id := range r.stores {
		if !gone[id] {
			kept = append(kept, id)
		}
	}
	r.stores = kept
}

// cleanup deletes what the run left: its stores through the platform,
// its baselines' namespaces directly.
func (r *run) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Form.Settle)
	defer cancel()
	if len(r.stores) > 0 && !r.orchestratorsOff {
		progress(r.cfg, "cleaning up: deleting %d stores", len(r.stores))
		_ = r.stack.ScaleOrchestrators(ctx, 2)
		ids := append([]string(nil), r.stores...)
		err := r.deleteAll(ctx, ids)
		if err == nil {
			_, err = r.waitPhase(ctx, ids, "PHASE_DELETED", time.Now(), time.Second)
		}
		if err != nil {
			progress(r.cfg, "cleaning up: stores may be left in the sandbox (namespaces store-*): %v", err)
		}
	}
	for _, ns := range r.baselines {
		_ = deleteNamespace(ctx, r.kube, ns, false)
	}
}
