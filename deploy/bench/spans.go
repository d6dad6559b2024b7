package bench

import (
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// spanCollector is an OTLP/HTTP receiver the services export their spans
// to (--otlp-endpoint, through $OTEL_EXPORTER_OTLP_ENDPOINT): the
// benchmark learns where the time of a provisioning goes from the
// services' own traces.
type spanCollector struct {
	srv *http.Server
	url string

	mu sync.Mutex
	// recording, when set, keeps the spans that arrive.
	recording bool
	spans     []span
}

// span is what the benchmark keeps of a span.
type span struct {
	service, name string
	took          time.Duration
}

func startSpanCollector() (*spanCollector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &spanCollector{url: "http://" + ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.receive)
	c.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *spanCollector) receive(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(io.LimitReader(body, 64<<20))
	var req collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	if c.recording {
		for _, rs := range req.GetResourceSpans() {
			service := ""
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					c.spans = append(c.spans, span{service: service, name: s.GetName(),
						took: time.Duration(s.GetEndTimeUnixNano() - s.GetStartTimeUnixNano())})
				}
			}
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// record starts keeping spans, dropping those kept before.
func (c *spanCollector) record() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording, c.spans = true, nil
}

// phases stops keeping spans and returns the median duration of each
// kind (service and span name), slowest first.
func (c *spanCollector) phases() []Phase {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recording = false
	by := map[string][]time.Duration{}
	for _, s := range c.spans {
		k := s.service + " " + s.name
		by[k] = append(by[k], s.took)
	}
	var out []Phase
	for k, ds := range by {
		service, name, _ := strings.Cut(k, " ")
		out = append(out, Phase{Service: service, Name: name, Count: len(ds), Median: median(ds)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Median != out[j].Median {
			return out[i].Median > out[j].Median
		}
		return out[i].Service+out[i].Name < out[j].Service+out[j].Name
	})
	return out
}

func (c *spanCollector) close() { _ = c.srv.Close() }

// Phase is the median time of one kind of span over the single-store
// provisionings.
type Phase struct {
	Service, Name string
	Count         int
	Median        time.Duration
}

// PhaseTable is the phases as a Markdown table.
func PhaseTable(phases []Phase) string {
	var b strings.Builder
	b.WriteString("| Service | Span | Spans | Median |\n| --- | --- | --- | --- |\n")
	for _, p := range phases {
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", p.Service, p.Name, p.Count, ms(p.Median))
	}
	return b.String()
}
