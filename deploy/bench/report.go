package bench

import (
	"fmt"
	"image/color"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Report holds every figure of a run.
type Report struct {
	Form, Database string
	NATS           bool
	Started        time.Time
	Took           time.Duration
	// Rate and For are the latency runs' requests per second and length.
	Rate int
	For  time.Duration
	// Single is one store, create → READY (median), against one helm
	// install; Delete one store, delete → DELETED (median), against
	// kubectl delete namespace.
	Single, Delete Pair
	// Burst is Form.Burst stores at once with two workers, BurstHelm the
	// helm CLI at the same parallelism.
	Burst, BurstHelm Curve
	Scaling          []Scale
	Memory           Memory
	Latency          []Latency
	// DeleteAll is how long the rest of the fleet took to be DELETED,
	// deleted at once.
	DeleteAll       time.Duration
	DeleteAllStores int
	// Phases are the median time of each kind of span of the services
	// over the single-store provisionings: where the time goes.
	Phases []Phase
}

// Pair is a figure of the platform and of its baseline.
type Pair struct{ Ours, Theirs time.Duration }

// Ratio is ours / theirs: below 1 the platform is faster.
func (p Pair) Ratio() float64 { return ratio(p.Ours, p.Theirs) }

// Curve is when each store of a burst was done, from the first request.
type Curve struct {
	Parallelism int
	Done        []time.Duration
	CPU         CPU
}

// Total is when the last store was done.
func (c Curve) Total() time.Duration {
	if len(c.Done) == 0 {
		return 0
	}
	return c.Done[len(c.Done)-1]
}

// Rate is stores per minute over the whole burst.
func (c Curve) Rate() float64 {
	if c.Total() == 0 {
		return 0
	}
	return float64(len(c.Done)) / c.Total().Minutes()
}

// Scale is a burst with a number of workers.
type Scale struct {
	Workers int
	Curve   Curve
}

// Memory is the orchestrators' resident memory with Stores idle READY
// stores, and with none (Empty).
type Memory struct {
	Stores, Orchestrators int
	RSS, Empty            int64
}

// PerStore is the memory each idle store adds.
func (m Memory) PerStore() float64 {
	if m.Stores == 0 {
		return 0
	}
	return float64(m.RSS-m.Empty) / float64(m.Stores)
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return a.Seconds() / b.Seconds()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// Table is the report as a Markdown table: each figure, its baseline, the
// ratio and the target.
func (rep *Report) Table() string {
	var b strings.Builder
	row := func(cells ...string) { fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | ")) }
	row("Figure", "storeprov", "Baseline", "Ratio", "Target")
	row("---", "---", "---", "---", "---")
	row("one store, create → READY (median)", secs(rep.Single.Ours), secs(rep.Single.Theirs)+" helm install --wait --wait-for-jobs",
		fmt.Sprintf("%.2f×", rep.Single.Ratio()), "≤ 1.0× (stretch 0.7×)")
	row(fmt.Sprintf("%d stores at once, all READY", len(rep.Burst.Done)),
		fmt.Sprintf("%s (%.0f/min, 2 workers × %d)", secs(rep.Burst.Total()), rep.Burst.Rate(), Concurrency),
		fmt.Sprintf("%s (%.0f/min, helm CLI %d at a time)", secs(rep.BurstHelm.Total()), rep.BurstHelm.Rate(), rep.BurstHelm.Parallelism),
		fmt.Sprintf("%.2f× the rate", rep.Burst.Rate()/max(rep.BurstHelm.Rate(), 1e-9)), "≥ 1.5×")
	var rate1 float64
	for _, s := range rep.Scaling {
		if s.Workers == 1 {
			rate1 = s.Curve.Rate()
		}
	}
	for _, s := range rep.Scaling {
		e := s.Curve.Rate() / (float64(s.Workers) * max(rate1, 1e-9))
		target := "–"
		switch s.Workers {
		case 2:
			target = "E(2) ≥ 0.85"
		case 4:
			target = "E(4) ≥ 0.7"
		}
		row(fmt.Sprintf("scaling, %d stores with %d worker(s)", len(s.Curve.Done), s.Workers),
			fmt.Sprintf("%s (%.0f/min)", secs(s.Curve.Total()), s.Curve.Rate()),
			fmt.Sprintf("cluster CPU %.0f %%, platform CPU %.0f %% of one core", cpuShare(s.Curve.CPU.Cluster, s.Curve.CPU.Wall), cpuShare(s.Curve.CPU.Platform, s.Curve.CPU.Wall)),
			fmt.Sprintf("E(%d) = %.2f", s.Workers, e), target)
	}
	grpcP99 := rep.grpcP99()
	for _, l := range rep.Latency {
		base, r, target := "–", "–", "–"
		if l.Call == "CreateStore" && l.Transport == "gRPC" {
			target = "p99 ≤ 20 ms"
		}
		if l.Transport == "REST" && grpcP99[l.Database+" "+l.Call] > 0 {
			base = "gRPC p99 " + ms(grpcP99[l.Database+" "+l.Call])
			r = fmt.Sprintf("%.2f×", ratio(l.P99, grpcP99[l.Database+" "+l.Call]))
			target = "REST p99 ≤ 1.5× gRPC p99"
		}
		errs := ""
		if l.Errors > 0 {
			errs = fmt.Sprintf(", %d errors (first: %s)", l.Errors, strings.ReplaceAll(l.FirstError, "|", "/"))
		}
		row(fmt.Sprintf("%s over %s on %s, %d/s for %s (%d requests)", l.Call, l.Transport, l.Database, rep.Rate, rep.For, l.Requests),
			fmt.Sprintf("p50 %s, p99 %s%s", ms(l.P50), ms(l.P99), errs), base, r, target)
	}
	m := rep.Memory
	row(fmt.Sprintf("orchestrator memory, %d idle READY stores", m.Stores),
		fmt.Sprintf("%.1f KiB per store", m.PerStore()/1024),
		fmt.Sprintf("%d orchestrators: %.1f MiB resident with no store, %.1f MiB with %d", m.Orchestrators, mib(m.Empty), mib(m.RSS), m.Stores),
		"–", "≤ 60 KiB per store")
	row("one store, delete → DELETED (median)", secs(rep.Delete.Ours), secs(rep.Delete.Theirs)+" kubectl delete namespace --wait",
		fmt.Sprintf("%.2f×", rep.Delete.Ratio()), "≤ 1.2×")
	if rep.DeleteAllStores > 0 {
		row(fmt.Sprintf("%d stores deleted at once, all DELETED", rep.DeleteAllStores), secs(rep.DeleteAll), "–", "–", "–")
	}
	return b.String()
}

// grpcP99 is each call's gRPC p99 by database and call ("sqlite
// CreateStore"), the baseline of its REST p99.
func (rep *Report) grpcP99() map[string]time.Duration {
	p99 := map[string]time.Duration{}
	for _, l := range rep.Latency {
		if l.Transport == "gRPC" {
			p99[l.Database+" "+l.Call] = l.P99
		}
	}
	return p99
}

// latencyP50 is the p50 of a call over a transport on a database, or 0.
func (rep *Report) latencyP50(database, call, transport string) time.Duration {
	for _, l := range rep.Latency {
		if l.Database == database && l.Call == call && l.Transport == transport {
			return l.P50
		}
	}
	return 0
}

func cpuShare(used, wall time.Duration) float64 {
	if wall == 0 {
		return 0
	}
	return 100 * used.Seconds() / wall.Seconds()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Plot draws the stores READY over time of the burst, the platform's
// against the helm CLI's, as a PNG.
func (rep *Report) Plot() ([]byte, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%d stores submitted at once: READY over time", len(rep.Burst.Done))
	p.X.Label.Text = "seconds since the first request"
	p.Y.Label.Text = "stores READY"
	for i, c := range []struct {
		name  string
		curve Curve
		color color.RGBA
	}{
		{fmt.Sprintf("storeprov, 2 workers × %d", Concurrency), rep.Burst, color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}},
		{fmt.Sprintf("helm CLI, %d at a time", rep.BurstHelm.Parallelism), rep.BurstHelm, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}},
	} {
		pts := plotter.XYs{{X: 0, Y: 0}}
		for n, d := range c.curve.Done {
			pts = append(pts, plotter.XY{X: d.Seconds(), Y: float64(n)}, plotter.XY{X: d.Seconds(), Y: float64(n + 1)})
		}
		line, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		line.Color = c.color
		line.Width = vg.Points(2)
		if i == 1 {
			line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		}
		p.Add(line)
		p.Legend.Add(c.name, line)
	}
	p.Legend.Top, p.Legend.Left = true, true
	w, err := p.WriterTo(7*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if _, err := w.WriteTo(&b); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}
