package limit

import (
	"crypto/sha256"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Bounds of the limiter's memory: past them, entries that carry no state
// are dropped, and if that is not enough, all of them.
const (
	maxClients   = 100_000
	maxKnownGood = 10_000
	knownGoodTTL = time.Minute
)

// Failures configures the limiter of, per client address, the calls that are unauthenticated
// or fail authentication, so that guessing tokens or flooding the api with
// them costs the api no more than Rate lookups a second per address.
//
// A call to a path under one of Paths (the REST API, the sign-in callback)
// takes one token from its address's bucket before it is forwarded, and is refused
// with 429 and Retry-After when the bucket is empty: a refused call never
// reaches the api. The token is given back when the api accepts the call's
// bearer token (any answer but 401); a call without a bearer token, or one
// the api answers 401, keeps it spent. A bearer token the api accepted in
// the last minute skips the limiter altogether, so users with valid tokens
// behind the same address as an abuser (a NAT, an office) keep working;
// its first 401 removes it from that list. A bearer token not on that list
// is judged once: while its first call is in flight, the others with it
// wait for that call's answer instead of each spending a token, so a client
// that sends a burst of calls with a valid token after a quiet minute is
// not refused. Other paths (the dashboard's
// files, the OpenAPI document, the sign-in's configuration) are not
// limited: they cost the api nothing.
//
// The buckets live in this gateway's memory: each replica limits the calls
// it receives.
type Failures struct {
	// Rate is the sustained number of such calls per second per address,
	// Burst the bucket's size; a Rate of 0 disables the limiter.
	Rate  float64
	Burst int
	// Proxies decides the client's address (Proxies.ClientAddr).
	Proxies Proxies
	// Paths are the path prefixes the limiter applies to.
	Paths []string
}

// failures is the limiter's state.
type failures struct {
	Failures
	mu        sync.Mutex
	clients   map[string]*bucket
	knownGood map[[sha256.Size]byte]time.Time
	// judging holds, for each bearer token not known good whose first
	// call is in flight, a channel closed once that call is answered.
	judging map[[sha256.Size]byte]chan struct{}
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// Handler wraps next with a new limiter; fail writes the 429, and refused,
// when not nil, is called for each refused call.
func (c Failures) Handler(next http.Handler, fail ErrorFunc, refused func()) http.Handler {
	return c.handler(next, fail, refused, time.Now)
}

func (c Failures) handler(next http.Handler, fail ErrorFunc, refused func(), now func() time.Time) http.Handler {
	if c.Rate <= 0 {
		return next
	}
	f := &failures{Failures: c, clients: map[string]*bucket{}, knownGood: map[[sha256.Size]byte]time.Time{},
		judging: map[[sha256.Size]byte]chan struct{}{}, now: now}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slices.ContainsFunc(f.Paths, func(p string) bool { return strings.HasPrefix(r.URL.Path, p) }) {
			next.ServeHTTP(w, r)
			return
		}
		token, hasToken := bearerToken(r)
		sum := sha256.Sum256([]byte(token))
		if hasToken && f.isKnownGood(sum) {
			next.ServeHTTP(w, r)
			return
		}
		judged := func() {}
		if hasToken {
			verdict, judge := f.judge(sum)
			if judge {
				judged = sync.OnceFunc(func() { f.judged(sum, verdict) })
				defer judged()
			} else {
				select {
				case <-verdict:
				case <-r.Context().Done():
					return
				}
				if f.isKnownGood(sum) {
					next.ServeHTTP(w, r)
					return
				}
			}
		}
		addr := f.Proxies.ClientAddr(r)
		key := clientKey(addr)
		if wait, ok := f.take(key); !ok {
			if refused != nil {
				refused()
			}
			seconds := int(math.Ceil(wait.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(seconds))
			fail(w, r, http.StatusTooManyRequests, codes.ResourceExhausted, fmt.Sprintf(
				"too many unauthenticated or failed requests from %s: retry in %d s, with a valid API token", addr, seconds))
			return
		}
		rec := &statusRecorder{ResponseWriter: w, onStatus: func(status int) {
			defer judged()
			switch {
			case !hasToken:
			case status == http.StatusUnauthorized:
				f.forget(sum)
			default:
				f.giveBack(key)
				if status < 500 {
					f.remember(sum)
				}
			}
		}}
		next.ServeHTTP(rec, r)
		rec.status(http.StatusOK)
	})
}

func bearerToken(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	return token, ok && token != ""
}

// take spends one token of key's bucket, or says how long until one is
// there.
func (f *failures) take(key string) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	b := f.clients[key]
	if b == nil {
		if len(f.clients) >= maxClients {
			f.sweep(now)
		}
		b = &bucket{tokens: float64(f.burst()), at: now}
		f.clients[key] = b
	}
	f.fill(b, now)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / f.Rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

// giveBack returns the token a call of key took.
func (f *failures) giveBack(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.clients[key]; b != nil {
		f.fill(b, f.now())
		b.tokens = min(b.tokens+1, float64(f.burst()))
	}
}

func (f *failures) burst() int { return max(f.Burst, 1) }

func (f *failures) fill(b *bucket, now time.Time) {
	if elapsed := now.Sub(b.at); elapsed > 0 {
		b.tokens = min(b.tokens+elapsed.Seconds()*f.Rate, float64(f.burst()))
		b.at = now
	}
}

// sweep drops the buckets that are full again, which a new bucket would
// equal; when they are all in use, it drops every one.
func (f *failures) sweep(now time.Time) {
	for k, b := range f.clients {
		if f.fill(b, now); b.tokens >= float64(f.burst()) {
			delete(f.clients, k)
		}
	}
	if len(f.clients) >= maxClients {
		clear(f.clients)
	}
}

func (f *failures) isKnownGood(sum [sha256.Size]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.knownGood[sum]
	return ok && f.now().Before(until)
}

func (f *failures) remember(sum [sha256.Size]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if len(f.knownGood) >= maxKnownGood {
		for k, until := range f.knownGood {
			if !now.Before(until) {
				delete(f.knownGood, k)
			}
		}
		if len(f.knownGood) >= maxKnownGood {
			clear(f.knownGood)
		}
	}
	f.knownGood[sum] = now.Add(knownGoodTTL)
}

// judge returns the channel that closes when the call judging the token
// sum is answered, and whether the caller is that call (it must call
// judged once it is answered).
func (f *failures) judge(sum [sha256.Size]byte) (chan struct{}, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if verdict, ok := f.judging[sum]; ok {
		return verdict, false
	}
	verdict := make(chan struct{})
	f.judging[sum] = verdict
	return verdict, true
}

// judged releases the calls waiting for the verdict on sum.
func (f *failures) judged(sum [sha256.Size]byte, verdict chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.judging, sum)
	close(verdict)
}

func (f *failures) forget(sum [sha256.Size]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.knownGood, sum)
}

// statusRecorder calls onStatus once, with the status of the response,
// when the handler first writes (or flushes) it, so that a stream is judged
// by its header rather than when it ends.
type statusRecorder struct {
	http.ResponseWriter
	onStatus func(int)
	done     bool
}

func (s *statusRecorder) status(code int) {
	if !s.done {
		s.done = true
		s.onStatus(code)
	}
}

func (s *statusRecorder) WriteHeader(code int) {
	if code >= 200 { // 1xx are interim
		s.status(code)
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.status(http.StatusOK)
	return s.ResponseWriter.Write(b)
}

// Flush implements http.Flusher, which grpc-gateway's streams need.
func (s *statusRecorder) Flush() {
	s.status(http.StatusOK)
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
