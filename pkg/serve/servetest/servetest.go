// Package servetest asks a service's admin server (package serve: /metrics,
// /healthz, /readyz) from tests, waiting for what becomes true in a moment.
package servetest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Get GETs url and returns its status code and body; it fails the test
// when url does not answer.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: cannot read the body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// WaitFor polls url until it answers want and returns that answer's body;
// it fails the test with the last answer after within.
func WaitFor(t testing.TB, url string, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body := Get(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d %q after %s, want %d", url, code, body, within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitForMetrics polls url (a /metrics) until its body holds every line
// of want (substrings, such as a metric with its labels); after 10 s it marks the
// test failed, naming a missing line, and returns.
func WaitForMetrics(t testing.TB, url string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := Get(t, url)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s lacks %s", url, missing)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
