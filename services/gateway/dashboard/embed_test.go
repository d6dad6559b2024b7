package dashboard_test

import (
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/storeprov/storeprov/services/gateway/dashboard"
)

func testFiles() fstest.MapFS {
	return fstest.MapFS{
		"index.html":              {Data: []byte(`<!doctype html><script type="module" src="/assets/index-abc123.js"></script>`)},
		"assets/index-abc123.js":  {Data: []byte(strings.Repeat("console.log('storeprov');\n", 200))},
		"assets/index-def456.css": {Data: []byte("body{margin:0}")},
		"robots.txt":              {Data: []byte("User-agent: *\n")},
	}
}

func serve(t *testing.T, h http.Handler, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesFilesWithTypesAndCaching(t *testing.T) {
	h, err := dashboard.NewHandler(testFiles())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target, wantType, wantCache string
		wantStatus                        int
		wantBodyPrefix                    string
	}{
		{name: "root is index.html, revalidated", target: "/", wantStatus: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache", wantBodyPrefix: "<!doctype html>"},
		{name: "hashed script is immutable", target: "/assets/index-abc123.js", wantStatus: 200, wantType: "text/javascript; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBodyPrefix: "console.log"},
		{name: "hashed stylesheet is immutable", target: "/assets/index-def456.css", wantStatus: 200, wantType: "text/css; charset=utf-8", wantCache: "public, max-age=31536000, immutable", wantBodyPrefix: "body{"},
		{name: "unhashed file is revalidated", target: "/robots.txt", wantStatus: 200, wantType: "text/plain; charset=utf-8", wantCache: "no-cache", wantBodyPrefix: "User-agent"},
		{name: "unknown app path falls back to index.html", target: "/stores/abc123", wantStatus: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache", wantBodyPrefix: "<!doctype html>"},
		{name: "dot-dot stays inside the app", target: "/../../etc/passwd", wantStatus: 200, wantType: "text/html; charset=utf-8", wantCache: "no-cache", wantBodyPrefix: "<!doctype html>"},
		{name: "dot-dot to a missing file is 404", target: "/assets/../../go.mod", wantStatus: 404},
		{name: "missing asset is 404, not the app", target: "/assets/index-old999.js", wantStatus: 404},
		{name: "missing file with extension is 404", target: "/favicon.ico", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := serve(t, h, http.MethodGet, tt.target, nil)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s: status %d, want %d", tt.target, res.StatusCode, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			if got := res.Header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type %q, want %q", got, tt.wantType)
			}
			if got := res.Header.Get("Cache-Control"); got != tt.wantCache {
				t.Errorf("Cache-Control %q, want %q", got, tt.wantCache)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
			if got := body(t, res); !strings.HasPrefix(got, tt.wantBodyPrefix) {
				t.Errorf("body starts %.40q, want prefix %q", got, tt.wantBodyPrefix)
			}
		})
	}
}

func TestHandlerGzipsWhenAcceptedAndRevalidatesWithETag(t *testing.T) {
	h, err := dashboard.NewHandler(testFiles())
	if err != nil {
		t.Fatal(err)
	}
	plain := serve(t, h, http.MethodGet, "/assets/index-abc123.js", nil)
	if plain.Header.Get("Content-Encoding") != "" {
		t.Fatalf("gzip without Accept-Encoding")
	}
	want := body(t, plain)

	gz := serve(t, h, http.MethodGet, "/assets/index-abc123.js", http.Header{"Accept-Encoding": {"br, gzip;q=0.8"}})
	if gz.Header.Get("Content-Encoding") != "gzip" || gz.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("Content-Encoding %q, Vary %q: want gzip, Accept-Encoding", gz.Header.Get("Content-Encoding"), gz.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("gunzipped body differs from the plain one")
	}
	if plain.Header.Get("ETag") == gz.Header.Get("ETag") {
		t.Errorf("plain and gzip representations share the ETag %s", plain.Header.Get("ETag"))
	}

	refused := serve(t, h, http.MethodGet, "/assets/index-abc123.js", http.Header{"Accept-Encoding": {"gzip;q=0"}})
	if refused.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip sent although the client refused it with q=0")
	}

	again := serve(t, h, http.MethodGet, "/", http.Header{"If-None-Match": {serve(t, h, http.MethodGet, "/", nil).Header.Get("ETag")}})
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: status %d, want 304", again.StatusCode)
	}
}

func TestHandlerRefusesWritesAndSecuresTheApp(t *testing.T) {
	h, err := dashboard.NewHandler(testFiles())
	if err != nil {
		t.Fatal(err)
	}
	if res := serve(t, h, http.MethodPost, "/", nil); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: status %d, Allow %q; want 405, GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
	res := serve(t, h, http.MethodHead, "/", nil)
	if res.StatusCode != 200 || body(t, res) != "" {
		t.Errorf("HEAD /: status %d with a body; want 200 and none", res.StatusCode)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("index.html Content-Security-Policy %q does not restrict scripts", csp)
	}
}

func TestNewHandlerNeedsIndexHTML(t *testing.T) {
	if _, err := dashboard.NewHandler(fstest.MapFS{"assets/a.js": {Data: []byte("x")}}); err == nil {
		t.Fatal("NewHandler accepted files without index.html")
	}
}

// The committed build must be complete: index.html and every asset it names.
func TestEmbeddedBuildServesIndexAndItsAssets(t *testing.T) {
	h := dashboard.Handler()
	res := serve(t, h, http.MethodGet, "/", nil)
	index := body(t, res)
	if res.StatusCode != 200 || !strings.Contains(index, `<div id="root">`) {
		t.Fatalf("GET /: status %d, body %.80q: want the built index.html", res.StatusCode, index)
	}
	assets, err := fs.Glob(dashboard.Dist, "dist/assets/*")
	if err != nil || len(assets) == 0 {
		t.Fatalf("no built assets in dist/assets (%v): run `npm run build`", err)
	}
	for _, a := range assets {
		ref := strings.TrimPrefix(a, "dist")
		if !strings.Contains(index, ref) {
			t.Errorf("dist has %s that index.html does not reference: stale build output, run `npm run build`", ref)
			continue
		}
		if res := serve(t, h, http.MethodGet, ref, nil); res.StatusCode != 200 {
			t.Errorf("GET %s: status %d", ref, res.StatusCode)
		}
	}
}
