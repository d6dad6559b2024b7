// Package chartstest writes versions of the store charts for tests, as an
// operator adds them to the orchestrator's --charts-dir: a copy of an
// embedded chart under another version, with changes a test can see in
// the cluster.
package chartstest

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	charts "github.com/storeprov/storeprov/helm"
)

// Annotation is the annotation WriteWordPress puts on the WordPress pods;
// its value is the chart version.
const Annotation = "storeprov.dev/test-chart-version"

// versionLine is the version line of a Chart.yaml.
var versionLine = regexp.MustCompile(`(?m)^version:\s*(\S+)\s*$`)

// Version returns the version of the embedded chart name.
func Version(t testing.TB, name string) string {
	t.Helper()
	m := versionLine.FindSubmatch(File(t, name, "Chart.yaml"))
	if m == nil {
		t.Fatalf("chart %s: no version line in Chart.yaml", name)
	}
	return strings.Trim(string(m[1]), `"'`)
}

// NextMinor returns the X.Y.Z version with its minor number bumped and
// its patch number reset: 0.1.0 → 0.2.0.
func NextMinor(t testing.TB, version string) string {
	t.Helper()
	parts := strings.Split(version, ".")
	if len(parts) != 3 {
		t.Fatalf("version %q is not X.Y.Z", version)
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		t.Fatalf("version %q is not X.Y.Z: %v", version, err)
	}
	return fmt.Sprintf("%s.%d.0", parts[0], minor+1)
}

// File returns a file of the embedded chart name, by its path in the
// chart ("templates/ingress.yaml").
func File(t testing.TB, name, file string) []byte {
	t.Helper()
	b, err := fs.ReadFile(charts.FS, path.Join(name, file))
	if err != nil {
		t.Fatalf("chart %s: %v", name, err)
	}
	return b
}

// Write copies the embedded chart name into a new directory of dir, named
// <name>-<version>, sets version in its Chart.yaml, then writes each of
// files (by path in the chart, replacing a file or adding one), and
// returns the chart's directory.
func Write(t testing.TB, dir, name, version string, files map[string][]byte) string {
	t.Helper()
	out := filepath.Join(dir, name+"-"+version)
	embedded, err := charts.Files(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range embedded {
		if err := writeFile(filepath.Join(out, filepath.FromSlash(f.Name)), f.Data); err != nil {
			t.Fatalf("cannot copy chart %s: %v", name, err)
		}
	}
	chartYAML := versionLine.ReplaceAll(File(t, name, "Chart.yaml"), []byte("version: "+version))
	if err := writeFile(filepath.Join(out, "Chart.yaml"), chartYAML); err != nil {
		t.Fatal(err)
	}
	for p, data := range files {
		if err := writeFile(filepath.Join(out, filepath.FromSlash(p)), data); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// WriteWordPress writes the WordPress chart into a new directory of dir as
// version, with one change a test can see in the cluster: the pod
// template of the WordPress Deployment (store-wordpress for release
// "store") is annotated Annotation: version, so that an upgrade to it
// rolls the WordPress pods. It returns the chart's directory.
func WriteWordPress(t testing.TB, dir, version string) string {
	t.Helper()
	const file = "templates/wordpress-deployment.yaml"
	const anchor = "      annotations:\n        checksum/php:"
	tmpl := string(File(t, charts.WordPress, file))
	if strings.Count(tmpl, anchor) != 1 {
		t.Fatalf("chart %s: %s no longer has the pod annotations this fixture extends (%q)", charts.WordPress, file, anchor)
	}
	tmpl = strings.Replace(tmpl, anchor, fmt.Sprintf("      annotations:\n        %s: %q\n        checksum/php:", Annotation, version), 1)
	return Write(t, dir, charts.WordPress, version, map[string][]byte{file: []byte(tmpl)})
}

func writeFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}
