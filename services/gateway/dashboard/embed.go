// Package dashboard serves the storeprov dashboard: the single-page app that
// `npm run build` writes to dist/, embedded in the gateway's binary. dist/ is
// committed, so the gateway builds without Node.
package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// Dist holds the built dashboard under the folder "dist".
//
//go:embed all:dist
var Dist embed.FS

// indexFile is the page served for the root and for every path the app routes itself.
const indexFile = "index.html"

// hashedDir holds Vite's content-hashed files: a changed file gets a new name,
// so browsers may keep these forever.
const hashedDir = "assets/"

// contentSecurityPolicy allows the app's own scripts, styles and API calls,
// and the data: URL of its favicon; nothing inline, nothing from elsewhere.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// contentTypes are set explicitly so that a host's mime.types cannot change them.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".webp":  "image/webp",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
	".wasm":  "application/wasm",
}

// file is one served file, read and hashed once at start.
type file struct {
	name        string
	body        []byte
	gzipped     []byte // nil when compression does not pay
	contentType string
	etag        string
}

// Handler serves the embedded dashboard; see NewHandler. It panics if dist/
// holds no index.html, which `go build` cannot catch: run `npm run build`.
func Handler() http.Handler {
	sub, err := fs.Sub(Dist, "dist")
	if err != nil {
		panic(fmt.Sprintf("dashboard: %v", err))
	}
	h, err := NewHandler(sub)
	if err != nil {
		panic(fmt.Sprintf("dashboard: %v", err))
	}
	return h
}

// NewHandler serves the single-page app in fsys (the contents of dist/):
// GET and HEAD only; a file by its path, with its content type, an ETag and
// gzip when the client accepts it; index.html for "/" and for any other path
// without a file extension, so the app can route it; 404 for a missing
// asset. Files under assets/ are cached for a year as immutable; everything
// else must be revalidated. It returns an error if fsys has no index.html.
func NewHandler(fsys fs.FS) (http.Handler, error) {
	files := map[string]*file{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files[name] = newFile(name, body)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the dashboard files: %w", err)
	}
	if files[indexFile] == nil {
		return nil, errors.New("the dashboard has no index.html: run `npm run build` in services/gateway/dashboard")
	}
	return &handler{files: files}, nil
}

func newFile(name string, body []byte) *file {
	sum := sha256.Sum256(body)
	f := &file{name: name, body: body, contentType: contentType(name), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	if compressible(f.contentType) && len(body) > 1024 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if buf.Len() < len(body)*9/10 {
			f.gzipped = buf.Bytes()
		}
	}
	return f
}

func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

func compressible(contentType string) bool {
	return strings.HasPrefix(contentType, "text/") || strings.HasPrefix(contentType, "application/json") ||
		strings.HasPrefix(contentType, "image/svg")
}

type handler struct {
	files map[string]*file
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = indexFile
	}
	f := h.files[name]
	if f == nil {
		// A missing script or image must fail as one, not load the app's HTML.
		if strings.HasPrefix(name, hashedDir) || path.Ext(name) != "" {
			http.NotFound(w, r)
			return
		}
		f = h.files[indexFile]
	}
	hdr := w.Header()
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if strings.HasPrefix(f.name, hashedDir) {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	if f.name == indexFile {
		hdr.Set("Content-Security-Policy", contentSecurityPolicy)
		hdr.Set("Referrer-Policy", "same-origin")
	}
	body, etag := f.body, f.etag
	if f.gzipped != nil {
		hdr.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = f.gzipped, strings.TrimSuffix(f.etag, `"`)+`-gz"`
			hdr.Set("Content-Encoding", "gzip")
		}
	}
	hdr.Set("ETag", etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
