package bench_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/storeprov/storeprov/deploy/bench"
	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// TestBenchmarkSmoke runs every measurement of `make bench` in its smoke
// form, so that the benchmark cannot rot. Its figures are not checked:
// only that each was taken.
func TestBenchmarkSmoke(t *testing.T) {
	kubeconfig := sandboxtest.KubeconfigPath(t)
	sandbox := filepath.Dir(kubeconfig)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	rep, err := bench.Run(context.Background(), bench.Config{
		Root: root, BinDir: t.TempDir(), Kubeconfig: kubeconfig,
		Helm: filepath.Join(sandbox, "bin", "helm"), Kubectl: filepath.Join(sandbox, "bin", "kubectl"),
		PostgresURL: os.Getenv(bench.PostgresURLEnv), NATSURL: os.Getenv(bench.NATSURLEnv),
		Form: bench.Smoke, Logs: &logs, Progress: testWriter{t},
	})
	if err != nil {
		t.Fatalf("%v\nservices' logs:\n%s", err, logs.String())
	}
	t.Logf("smoke figures (meaningless):\n%s", rep.Table())

	taken := map[string]bool{
		"single create": rep.Single.Ours > 0 && rep.Single.Theirs > 0,
		"burst":         len(rep.Burst.Done) == bench.Smoke.Burst && len(rep.BurstHelm.Done) == bench.Smoke.Burst,
		"scaling":       len(rep.Scaling) == len(bench.Smoke.Workers),
		"memory":        rep.Memory.RSS > 0 && rep.Memory.Empty > 0,
		"delete":        rep.Delete.Ours > 0 && rep.Delete.Theirs > 0,
		"latency":       len(rep.Latency) == map[string]int{"sqlite": 4, "postgres": 8}[rep.Database],
		"phases":        len(rep.Phases) > 0,
	}
	for name, ok := range taken {
		if !ok {
			t.Errorf("the %s figure was not taken", name)
		}
	}
	for _, l := range rep.Latency {
		if l.Errors > 0 {
			t.Errorf("%s over %s on %s: %d of %d calls failed, first: %s", l.Call, l.Transport, l.Database, l.Errors, l.Requests, l.FirstError)
		}
	}
	png, err := rep.Plot()
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("plot: %d bytes, %v", len(png), err)
	}
	if md := rep.Markdown("benchmarks.png"); !strings.Contains(md, "| Figure |") || len(rep.Targets()) == 0 {
		t.Errorf("docs/benchmarks.md would lack its table or targets:\n%s", md)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
