package kube

import (
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// RetryBackoff is the wait before each retry of a request the API server
// (or something in front of it) answered with a transient error.
var RetryBackoff = []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond, time.Second}

// RetryTransient makes cfg's clients retry, up to len(RetryBackoff) times,
// a request answered 429, 500, 502, 503 or 504, or cut by a reset or
// refused connection. One such answer would otherwise fail a whole
// reconcile, which makes about a hundred requests and is retried from the
// start with a backoff that grows to minutes; with a few percent of
// requests failing, it would rarely finish.
//
// Retrying a write is safe here: every write a reconcile makes is
// idempotent (server-side apply, create-if-absent answered AlreadyExists,
// deletes answered NotFound, Helm's records written by revision), which is
// what the lease package's fencing contract already relies on. A request
// whose body cannot be read again is not retried.
func RetryTransient(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return retryTransport{next: rt} })
}

type retryTransport struct{ next http.RoundTripper }

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		if attempt == len(RetryBackoff) || !transient(resp, err) || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		timer := time.NewTimer(RetryBackoff[attempt])
		select {
		case <-req.Context().Done():
			timer.Stop()
			return nil, req.Context().Err()
		case <-timer.C:
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

func transient(resp *http.Response, err error) bool {
	if err != nil {
		var op *net.OpError
		return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.ErrUnexpectedEOF) ||
			errors.As(err, &op) && op.Op == "dial"
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
