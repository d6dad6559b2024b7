package catalog_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
	"github.com/storeprov/storeprov/services/orchestrator/internal/catalog"
)

func TestEmbeddedHoldsTheStoreChartsOfTheBinary(t *testing.T) {
	c := catalog.Embedded()
	for _, name := range []string{charts.WordPress, charts.Medusa} {
		want := chartstest.Version(t, name)
		if diff := cmp.Diff([]string{want}, c.Versions(name)); diff != "" {
			t.Errorf("versions of %s (-want +got):\n%s", name, diff)
		}
		ch, err := c.Get(name, "")
		if err != nil || ch.Metadata.Name != name || ch.Metadata.Version != want || len(ch.Templates) == 0 {
			t.Errorf("Get(%s, newest) = %v, %v; want the embedded chart %s", name, ch.Metadata, err, want)
		}
	}
	if got := c.Versions(charts.Platform); len(got) != 0 {
		t.Errorf("the catalog holds the platform chart %v; it is not a store chart", got)
	}
}

func TestLoadAddsTheVersionsOfADirectory(t *testing.T) {
	embedded := chartstest.Version(t, charts.WordPress)
	next := chartstest.NextMinor(t, embedded)
	later := chartstest.NextMinor(t, next)
	staged := chartstest.NextMinor(t, later) + "-rc.1"
	dir := t.TempDir()
	chartstest.WriteWordPress(t, dir, next)
	// A packaged chart, as `helm package` writes it.
	src := chartstest.Write(t, t.TempDir(), charts.WordPress, later, nil)
	ch, err := loader.LoadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chartutil.Save(ch, dir); err != nil {
		t.Fatal(err)
	}
	chartstest.Write(t, dir, charts.WordPress, staged, nil)
	// What else a directory may hold is skipped.
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("charts"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil {
		t.Fatal(err)
	}

	c, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{embedded, next, later, staged}, c.Versions(charts.WordPress)); diff != "" {
		t.Errorf("versions, oldest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{chartstest.Version(t, charts.Medusa)}, c.Versions(charts.Medusa)); diff != "" {
		t.Errorf("medusa versions (-want +got):\n%s", diff)
	}
	newest, err := c.Newest(charts.WordPress)
	if err != nil || newest != later {
		t.Errorf("Newest = %q, %v; want %s, the newest that is not a pre-release", newest, err, later)
	}
	for _, version := range []string{embedded, next, later, staged} {
		got, err := c.Get(charts.WordPress, version)
		if err != nil || got.Metadata.Version != version {
			t.Errorf("Get(%s) = %v, %v", version, got.Metadata, err)
		}
		if resolved, err := c.Resolve(charts.WordPress, version); resolved != version || err != nil {
			t.Errorf("Resolve(%s) = %q, %v", version, resolved, err)
		}
	}
	// The directory's chart is the one loaded, not the embedded one.
	got, err := c.Get(charts.WordPress, next)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tmpl := range got.Templates {
		found = found || strings.Contains(string(tmpl.Data), chartstest.Annotation)
	}
	if !found {
		t.Errorf("Get(%s) lacks the template change of the directory's chart", next)
	}
	// Each Get is a copy of its own.
	again, _ := c.Get(charts.WordPress, next)
	got.Values["changed"] = true
	if _, ok := again.Values["changed"]; ok {
		t.Error("two Gets share their chart: a Helm action could change another's")
	}
}

func TestGetRefusesWhatTheCatalogDoesNotHold(t *testing.T) {
	dir := t.TempDir()
	next := chartstest.NextMinor(t, chartstest.Version(t, charts.WordPress))
	chartstest.WriteWordPress(t, dir, next)
	c, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := charts.WordPress + " 9.9.9 is not among the versions of " + charts.WordPress + " this orchestrator has, " +
		chartstest.Version(t, charts.WordPress) + ", " + next
	_, err = c.Get(charts.WordPress, "9.9.9")
	if !errors.Is(err, catalog.ErrVersionUnavailable) || !strings.Contains(err.Error(), want) {
		t.Errorf("Get(9.9.9) = %v, want ErrVersionUnavailable saying %q", err, want)
	}
	_, err = c.Resolve(charts.WordPress, "9.9.9")
	if !errors.Is(err, catalog.ErrVersionUnavailable) || !strings.Contains(err.Error(), want) {
		t.Errorf("Resolve(9.9.9) = %v, want ErrVersionUnavailable saying %q", err, want)
	}
	if _, err := c.Get("shopify", ""); !errors.Is(err, catalog.ErrUnknownChart) || !strings.Contains(err.Error(), charts.WordPress) {
		t.Errorf("Get(shopify) = %v, want ErrUnknownChart naming the store charts", err)
	}
}

func TestLoadRefusesADirectoryItCannotTrust(t *testing.T) {
	embedded := chartstest.Version(t, charts.WordPress)
	chartYAML := func(name, version string) map[string][]byte {
		return map[string][]byte{"Chart.yaml": []byte("apiVersion: v2\nname: " + name + "\nversion: " + version + "\ntype: application\n")}
	}
	tests := []struct {
		name    string
		write   func(t *testing.T, dir string)
		wantErr string
	}{
		{
			name:    "no such directory",
			write:   func(t *testing.T, dir string) { os.Remove(dir) },
			wantErr: "cannot read charts directory",
		},
		{
			name:    "no chart in it",
			write:   func(t *testing.T, dir string) {},
			wantErr: "holds no chart",
		},
		{
			name: "a version that is already embedded, with another content",
			write: func(t *testing.T, dir string) {
				chartstest.WriteWordPress(t, dir, embedded)
			},
			wantErr: "a version must stand for one content",
		},
		{
			name: "a chart that is not a store chart",
			write: func(t *testing.T, dir string) {
				chartstest.Write(t, dir, charts.WordPress, "0.9.0", chartYAML("shopify", "0.9.0"))
			},
			wantErr: `named "shopify", not a store chart`,
		},
		{
			name: "a version UpgradeStore cannot ask for",
			write: func(t *testing.T, dir string) {
				chartstest.Write(t, dir, charts.WordPress, "1.2", chartYAML(charts.WordPress, "1.2"))
			},
			wantErr: `has version "1.2": use a semantic version X.Y.Z`,
		},
		{
			name: "a tenant schema that admits what it does not name",
			write: func(t *testing.T, dir string) {
				chartstest.Write(t, dir, charts.WordPress, "0.9.0", map[string][]byte{
					charts.TenantSchemaFile: []byte(`{"type":"object","properties":{"wordpress":{"type":"object"}}}`),
				})
			},
			wantErr: "the schema must set additionalProperties: false",
		},
		{
			name: "a chart that does not load",
			write: func(t *testing.T, dir string) {
				chartstest.Write(t, dir, charts.WordPress, "0.9.0", map[string][]byte{"values.yaml": []byte("{{ not yaml")})
			},
			wantErr: "cannot load chart",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "charts")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.write(t, dir)
			c, err := catalog.Load(dir)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Load = %v, %v; want an error saying %q", c, err, tt.wantErr)
			}
		})
	}
}

func TestEachVersionHasTheTenantPolicyOfItsChart(t *testing.T) {
	embedded := chartstest.Version(t, charts.WordPress)
	stricter := chartstest.NextMinor(t, embedded)
	without := chartstest.NextMinor(t, stricter)
	dir := t.TempDir()
	chartstest.Write(t, dir, charts.WordPress, stricter, map[string][]byte{charts.TenantSchemaFile: []byte(`{
		"type": "object", "additionalProperties": false,
		"properties": {"wordpress": {"type": "object", "additionalProperties": false,
			"properties": {"replicas": {"type": "integer", "minimum": 1, "maximum": 2, "description": "WordPress pods, 1 or 2"}}}}}`)})
	src := chartstest.Write(t, dir, charts.WordPress, without, nil)
	if err := os.Remove(filepath.Join(src, charts.TenantSchemaFile)); err != nil {
		t.Fatal(err)
	}
	c, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		version   string
		overrides map[string]string
		wantErr   string
	}{
		{version: embedded, overrides: map[string]string{"wordpress.replicas": "3", "setup.currency": "EUR"}},
		{version: stricter, overrides: map[string]string{"wordpress.replicas": "2"}},
		{version: stricter, overrides: map[string]string{"wordpress.replicas": "3"}, wantErr: `values["wordpress.replicas"]: must be at most 2`},
		{version: stricter, overrides: map[string]string{"setup.currency": "EUR"},
			wantErr: `values["setup.currency"]: is not a value a tenant may set; allowed: wordpress.replicas`},
		{version: without},
		{version: without, overrides: map[string]string{"wordpress.replicas": "2"},
			wantErr: `values["wordpress.replicas"]: is not a value a tenant may set; allowed: none: this chart version declares no values a tenant may set`},
	}
	for _, tt := range tests {
		p, err := c.TenantPolicy(charts.WordPress, tt.version)
		if err != nil {
			t.Fatalf("TenantPolicy(%s) = %v", tt.version, err)
		}
		err = p.Check(tt.overrides)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
			t.Errorf("chart %s: Check(%v) = %v, want %q", tt.version, tt.overrides, err, tt.wantErr)
		}
	}
	if _, err := c.TenantPolicy(charts.WordPress, "9.9.9"); !errors.Is(err, catalog.ErrVersionUnavailable) {
		t.Errorf("TenantPolicy(9.9.9) = %v, want ErrVersionUnavailable", err)
	}
}

func TestHasOrderCheckSaysWhichChartsRunOne(t *testing.T) {
	c := catalog.Embedded()
	for name, want := range map[string]bool{charts.Medusa: true, charts.WordPress: true} {
		if got, err := c.HasOrderCheck(name, ""); err != nil || got != want {
			t.Errorf("HasOrderCheck(%s) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := c.HasOrderCheck(charts.Medusa, "9.9.9"); !errors.Is(err, catalog.ErrVersionUnavailable) {
		t.Errorf("HasOrderCheck(9.9.9) = %v, want ErrVersionUnavailable", err)
	}
}
