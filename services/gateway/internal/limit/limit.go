// Package limit bounds what one client can make the gateway do: the size of
// a request body, how long a request may take to be read and answered, and
// how many unauthenticated or failed calls one address may make. Each is an
// http.Handler wrapper; the gateway's app wires them around its mux.
package limit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
)

// ErrorFunc writes an error response with the HTTP status httpStatus and,
// in the body, the gRPC code and message, in the shape of the gateway's
// other errors.
type ErrorFunc func(w http.ResponseWriter, r *http.Request, httpStatus int, code codes.Code, message string)

// Body refuses a request whose body is larger than max bytes with 413,
// before next sees it. A body within the limit is read whole, under the
// server's ReadTimeout, and handed to next from memory. The connection of
// a refused request is closed rather than drained.
func Body(next http.Handler, max int64, fail ErrorFunc) http.Handler {
	tooLarge := func(w http.ResponseWriter, r *http.Request) {
		fail(w, r, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
			fmt.Sprintf("request body too large: at most %d bytes (%s) are accepted", max, bytesString(max)))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			tooLarge(w, r)
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			tooLarge(w, r)
			return
		}
		if err != nil {
			fail(w, r, http.StatusBadRequest, codes.InvalidArgument, fmt.Sprintf("cannot read the request body: %v", err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Deadlines bounds the time to answer each request that streaming does not
// select: its context (and so the gRPC call it makes) is cancelled after d,
// and its writes fail a little later, leaving time to answer 504 rather
// than close the connection without a word. A streaming request (WatchStores) has no
// write deadline. It replaces http.Server.WriteTimeout, which would end
// every stream after d.
func Deadlines(next http.Handler, d time.Duration, streaming func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if streaming(r) || d <= 0 {
			// Nor may a deadline a previous request on this
			// connection set carry over.
			_ = rc.SetWriteDeadline(time.Time{})
			next.ServeHTTP(w, r)
			return
		}
		_ = rc.SetWriteDeadline(time.Now().Add(d + min(d/4, 5*time.Second)))
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
