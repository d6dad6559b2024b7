// Package catalog holds the store charts an orchestrator can install, by
// name and version: the charts embedded in its binary (package charts, one
// version of each) and, optionally, more versions read from a directory
// at start (--charts-dir), so that a store can move to a newer chart, or
// stay on an older one, without a new orchestrator build.
//
// A chart version stands for one content: the same name and version from
// two sources is refused, so that every replica installs the same objects
// for it. Versions are semantic versions (X.Y.Z, as UpgradeStore takes
// them); a new store that asks for no version gets the newest release, as
// Helm picks it: pre-releases (0.2.0-rc.1) only when asked for by name,
// so that staging one does not put new stores on it. A store installed
// already keeps its version (see reconcile.ReleaseStep).
package catalog

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"

	charts "github.com/storeprov/storeprov/helm"
)

var (
	// ErrUnknownChart means a chart name that is not a store chart
	// (charts.WordPress or charts.Medusa).
	ErrUnknownChart = errors.New("unknown chart")
	// ErrVersionUnavailable means the catalog does not hold the chart
	// version asked for; the error's message lists the versions it holds.
	ErrVersionUnavailable = errors.New("chart version not available")
)

// storeCharts are the charts a catalog holds versions of.
var storeCharts = []string{charts.WordPress, charts.Medusa}

// Catalog is a set of store chart versions. It does not change once
// built, and is safe for concurrent use.
type Catalog struct {
	// versions of each store chart, oldest first.
	versions map[string][]entry
}

// entry is one chart version.
type entry struct {
	version *semver.Version
	// files are the chart's files (after .helmignore), loaded afresh by
	// Get: Helm's actions may modify the chart they are given.
	files []*loader.BufferedFile
	// source says where the version came from, for errors.
	source string
	// policy is what a tenant may set in the chart's values.
	policy *charts.TenantPolicy
	// orderCheck: the chart has an order check (charts.HasOrderCheck).
	orderCheck bool
}

// Embedded returns the catalog of the store charts embedded in the
// binary. It panics if they do not load, which a test of this package
// catches before any release.
func Embedded() *Catalog {
	c := &Catalog{versions: map[string][]entry{}}
	for _, name := range storeCharts {
		files, err := charts.Files(name)
		if err == nil {
			err = c.add(files, "embedded")
		}
		if err != nil {
			panic(fmt.Sprintf("embedded chart %s: %v", name, err))
		}
	}
	return c
}

// Load returns the embedded charts plus every chart in dir: each
// subdirectory holding a Chart.yaml (an unpacked chart, .helmignore
// applied) and each packaged chart (*.tgz, as `helm package` writes it).
// Names starting with "." are skipped. An empty dir adds nothing. It
// fails when dir cannot be read, holds no chart, or holds a chart that is
// not a store chart, has no X.Y.Z version, repeats a version already held,
// or has a charts.TenantSchemaFile that charts.LoadTenantPolicy refuses.
func Load(dir string) (*Catalog, error) {
	c := Embedded()
	if dir == "" {
		return c, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read charts directory: %w", err)
	}
	found := 0
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var ch *chart.Chart
		switch {
		case strings.HasPrefix(e.Name(), "."):
			continue
		case strings.HasSuffix(e.Name(), ".tgz"):
			ch, err = loader.LoadFile(p)
		default:
			// Stat follows symbolic links, as mounted ConfigMaps have.
			if st, serr := os.Stat(filepath.Join(p, "Chart.yaml")); serr != nil || st.IsDir() {
				continue
			}
			ch, err = loader.LoadDir(p)
		}
		if err != nil {
			return nil, fmt.Errorf("cannot load chart %s: %w", p, err)
		}
		files := make([]*loader.BufferedFile, 0, len(ch.Raw))
		for _, f := range ch.Raw {
			files = append(files, &loader.BufferedFile{Name: f.Name, Data: f.Data})
		}
		if err := c.add(files, p); err != nil {
			return nil, err
		}
		found++
	}
	if found == 0 {
		return nil, fmt.Errorf("charts directory %s holds no chart: put chart directories (with a Chart.yaml) or packaged charts (.tgz) of %s in it",
			dir, strings.Join(storeCharts, " or "))
	}
	return c, nil
}

// add checks a chart and adds it as a version of its name.
func (c *Catalog) add(files []*loader.BufferedFile, source string) error {
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return fmt.Errorf("cannot load chart %s: %w", source, err)
	}
	name, raw := ch.Metadata.Name, ch.Metadata.Version
	if !slices.Contains(storeCharts, name) {
		return fmt.Errorf("chart %s is named %q, not a store chart: its Chart.yaml must name %s", source, name, strings.Join(storeCharts, " or "))
	}
	v, err := semver.StrictNewVersion(raw)
	if err != nil {
		return fmt.Errorf("chart %s has version %q: use a semantic version X.Y.Z, which UpgradeStore can ask for", source, raw)
	}
	for _, e := range c.versions[name] {
		if e.version.Original() == raw {
			return fmt.Errorf("chart %s %s is both %s and %s: a version must stand for one content; give the new one another version in its Chart.yaml",
				name, raw, e.source, source)
		}
	}
	policy, err := charts.TenantPolicyOf(ch)
	if err != nil {
		return fmt.Errorf("chart %s: %w", source, err)
	}
	vs := append(c.versions[name], entry{version: v, files: files, source: source, policy: policy, orderCheck: charts.HasOrderCheck(ch)})
	slices.SortStableFunc(vs, func(a, b entry) int {
		return cmp.Or(a.version.Compare(b.version), strings.Compare(a.version.Original(), b.version.Original()))
	})
	c.versions[name] = vs
	return nil
}

// Get returns a fresh copy of chart name at version; an empty version
// means the newest (see Newest). Its errors are Resolve's.
func (c *Catalog) Get(name, version string) (*chart.Chart, error) {
	e, err := c.find(name, version)
	if err != nil {
		return nil, err
	}
	ch, err := loader.LoadFiles(e.files)
	if err != nil {
		// Loaded once already when added: the files cannot have changed.
		return nil, fmt.Errorf("cannot load chart %s %s: %w", name, e.version.Original(), err)
	}
	return ch, nil
}

// Resolve returns the version of chart name that version asks for: itself
// when the catalog holds it, the newest (see Newest) when it is empty. A
// name other than a store chart's is ErrUnknownChart; a version the
// catalog does not hold is ErrVersionUnavailable, whose message lists the
// versions it holds.
func (c *Catalog) Resolve(name, version string) (string, error) {
	e, err := c.find(name, version)
	if err != nil {
		return "", err
	}
	return e.version.Original(), nil
}

// TenantPolicy returns what a tenant may set in the values of chart name
// at version (empty: the newest), as the chart's
// charts.TenantSchemaFile declares it: a chart without one admits no
// override. Its errors are Resolve's.
func (c *Catalog) TenantPolicy(name, version string) (*charts.TenantPolicy, error) {
	e, err := c.find(name, version)
	if err != nil {
		return nil, err
	}
	return e.policy, nil
}

// HasOrderCheck reports whether chart name at version (empty: the
// newest) has an order check that orderCheck.enabled turns on (see
// charts.HasOrderCheck); a version without one refuses that value. Its
// errors are Resolve's.
func (c *Catalog) HasOrderCheck(name, version string) (bool, error) {
	e, err := c.find(name, version)
	if err != nil {
		return false, err
	}
	return e.orderCheck, nil
}

// Newest returns the version of chart name that a store asking for no
// version gets: the newest that is not a pre-release, or the newest
// pre-release when there is nothing else. A name other than a store
// chart's is ErrUnknownChart.
func (c *Catalog) Newest(name string) (string, error) {
	return c.Resolve(name, "")
}

func (c *Catalog) find(name, version string) (entry, error) {
	vs := c.versions[name]
	if len(vs) == 0 {
		return entry{}, fmt.Errorf("%w %q: use %s", ErrUnknownChart, name, strings.Join(storeCharts, " or "))
	}
	if version == "" {
		return vs[newest(vs)], nil
	}
	i := slices.IndexFunc(vs, func(e entry) bool { return e.version.Original() == version })
	if i < 0 {
		return entry{}, fmt.Errorf("%w: %s %s is not among the versions of %s this orchestrator has, %s; ask for one of them, or for none to get the newest",
			ErrVersionUnavailable, name, version, name, strings.Join(c.Versions(name), ", "))
	}
	return vs[i], nil
}

// Versions returns the versions of chart name, oldest first; none for a
// name that is not a store chart.
func (c *Catalog) Versions(name string) []string {
	out := make([]string, 0, len(c.versions[name]))
	for _, e := range c.versions[name] {
		out = append(out, e.version.Original())
	}
	return out
}

// newest is the index of the newest version that is not a pre-release in
// vs (sorted, not empty), or of the newest one if all are.
func newest(vs []entry) int {
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].version.Prerelease() == "" {
			return i
		}
	}
	return len(vs) - 1
}
