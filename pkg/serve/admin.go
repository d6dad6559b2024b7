package serve

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// CheckTimeout bounds each readiness check of one /readyz request.
const CheckTimeout = 2 * time.Second

// Check is one dependency /readyz asks about.
type Check struct {
	// Name says what is checked, such as "database" or "nats".
	Name string
	// Func returns nil when the dependency can be used, or an error that
	// says why not. Its context ends after CheckTimeout.
	Func func(ctx context.Context) error
}

// ListenAdmin binds the admin HTTP server to addr (port 0 picks a free
// one), logs "metrics server listening" with the bound address, and
// returns it. Run serves it:
//
//	/metrics  the service's Registry
//	/healthz  liveness: 200 while the process answers. Run keeps every
//	          task running or stops the whole service, so a process that
//	          answers is one whose tasks run; it stays 200 while stopping.
//	/readyz   readiness: 200 once Run runs and every check passes, 503
//	          before, when a check fails and once the service stops. The
//	          body has a line per check.
//
// An empty addr serves no admin endpoints and returns "". The error means
// addr cannot be listened on.
func (s *Service) ListenAdmin(addr string, checks ...Check) (string, error) {
	if addr == "" {
		return "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("cannot listen on --metrics-addr %s: %w", addr, err)
	}
	s.checks = checks
	s.adminLis = lis
	s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute}
	bound := lis.Addr().String()
	s.Log.Info("metrics server listening", "addr", bound)
	return bound, nil
}

// adminHandler serves /metrics, /healthz and /readyz as ListenAdmin
// describes, with the checks given to ListenAdmin.
func (s *Service) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(s.Registry, promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

func (s *Service) readyz(w http.ResponseWriter, r *http.Request) {
	switch s.state.Load() {
	case starting:
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	case stopping:
		http.Error(w, "stopping", http.StatusServiceUnavailable)
		return
	}
	results := make([]error, len(s.checks))
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			defer cancel()
			results[i] = c.Func(ctx)
		})
	}
	wg.Wait()
	var body strings.Builder
	code := http.StatusOK
	for i, c := range s.checks {
		if err := results[i]; err != nil {
			code = http.StatusServiceUnavailable
			fmt.Fprintf(&body, "%s: %v\n", c.Name, err)
		} else {
			fmt.Fprintf(&body, "%s: ok\n", c.Name)
		}
	}
	if len(s.checks) == 0 {
		body.WriteString("ok\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body.String()))
}
