package charts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"

	charts "github.com/storeprov/storeprov/helm"
)

// tenantPolicy returns the tenant policy of the embedded chart name.
func tenantPolicy(t *testing.T, name string) *charts.TenantPolicy {
	t.Helper()
	p, err := charts.TenantPolicyFor(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTenantPolicyAdmitsOnlyDeclaredValues(t *testing.T) {
	tests := []struct {
		name      string
		reason    string
		chart     string
		overrides map[string]string
		// wantErr is the whole message, or its start when it ends with "…".
		wantErr string
	}{
		{
			name: "store settings and sizes", reason: "what an owner tunes", chart: charts.WordPress,
			overrides: map[string]string{
				"wordpress.replicas": "2", "wordpress.resources.limits.cpu": "2", "wordpress.resources.requests.cpu": "1500m",
				"wordpress.resources.limits.memory": "4Gi", "mariadb.resources.requests.memory": "1Gi",
				"wordpress.php.memoryLimit": "512M", "wordpress.php.uploadMaxFilesize": "64M", "setup.currency": "EUR",
				"setup.product.name": "Mug $(STOREPROV_KEY_SEED) \"n°1\"", "setup.product.sku": "mug-01",
				"setup.product.regularPrice": "19.99", "setup.product.description": "Dishwasher-safe.",
			},
		},
		{
			name: "medusa sizes", reason: "what an owner tunes", chart: charts.Medusa,
			overrides: map[string]string{"medusa.replicas": "3", "medusa.resources.limits.cpu": "1.5", "postgresql.resources.limits.memory": "2048Mi"},
		},
		{name: "no overrides", reason: "an upgrade may change only the chart version", chart: charts.WordPress},

		{name: "image repository", reason: "runs any image", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.image.repository": "evil/miner"},
			wantErr:   `values["wordpress.image.repository"]: is not a value a tenant may set; allowed: mariadb.resources.limits.cpu, mariadb.resources.limits.memory, …`},
		{name: "image tag", reason: "a version is a chart version", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.image.tag": "latest"}, wantErr: `values["wordpress.image.tag"]: is not a value a tenant may set; …`},
		{name: "pull policy", reason: "the platform's", chart: charts.Medusa,
			overrides: map[string]string{"medusa.image.pullPolicy": "Always"}, wantErr: `values["medusa.image.pullPolicy"]: is not a value a tenant may set; allowed: medusa.replicas, …`},
		{name: "run as user", reason: "security contexts are the platform's", chart: charts.Medusa,
			overrides: map[string]string{"medusa.runAsUser": "0"}, wantErr: `values["medusa.runAsUser"]: is not a value a tenant may set; …`},
		{name: "security context", reason: "security contexts are the platform's", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.securityContext.privileged": "true"}, wantErr: `values["wordpress.securityContext.privileged"]: is not a value a tenant may set; …`},
		{name: "ingress class", reason: "ingress is the platform's", chart: charts.WordPress,
			overrides: map[string]string{"ingress.className": "other"}, wantErr: `values["ingress.className"]: is not a value a tenant may set; …`},
		{name: "ingress annotation", reason: "annotations configure the shared controller", chart: charts.Medusa,
			overrides: map[string]string{"ingress.annotations.snippet": "x"}, wantErr: `values["ingress.annotations.snippet"]: is not a value a tenant may set; …`},
		{name: "storage class", reason: "storage is the platform's", chart: charts.WordPress,
			overrides: map[string]string{"storageClass": "fast"}, wantErr: `values["storageClass"]: is not a value a tenant may set; …`},
		{name: "volume size", reason: "claims are bounded by the plan", chart: charts.WordPress,
			overrides: map[string]string{"mariadb.persistence.size": "20Gi"}, wantErr: `values["mariadb.persistence.size"]: is not a value a tenant may set; …`},
		{name: "mount path", reason: "the platform's", chart: charts.Medusa,
			overrides: map[string]string{"medusa.persistence.mountPath": "/etc"}, wantErr: `values["medusa.persistence.mountPath"]: is not a value a tenant may set; …`},
		{name: "credentials secret", reason: "points the chart at another Secret", chart: charts.WordPress,
			overrides: map[string]string{"existingSecret.database": "other"}, wantErr: `values["existingSecret.database"]: is not a value a tenant may set; …`},
		{name: "credential", reason: "credentials come from the store's Secrets", chart: charts.WordPress,
			overrides: map[string]string{"mariadb.rootPassword": "hunter2"}, wantErr: `values["mariadb.rootPassword"]: is not a value a tenant may set; …`},
		{name: "extra env", reason: "env reads any Secret of the namespace", chart: charts.Medusa,
			overrides: map[string]string{"medusa.extraEnv": "[]"}, wantErr: `values["medusa.extraEnv"]: is not a value a tenant may set; …`},
		{name: "probe", reason: "the platform's", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.livenessProbe.periodSeconds": "1"}, wantErr: `values["wordpress.livenessProbe.periodSeconds"]: is not a value a tenant may set; …`},
		{name: "store id", reason: "set by the platform", chart: charts.WordPress,
			overrides: map[string]string{"storeId": "other"}, wantErr: `values["storeId"]: is not a value a tenant may set; …`},
		{name: "title", reason: "the display name is the title", chart: charts.WordPress,
			overrides: map[string]string{"title": "x"}, wantErr: `values["title"]: is not a value a tenant may set; …`},
		{name: "job deadline", reason: "the platform's", chart: charts.WordPress,
			overrides: map[string]string{"setup.activeDeadlineSeconds": "99999"}, wantErr: `values["setup.activeDeadlineSeconds"]: is not a value a tenant may set; …`},
		{name: "other engine's key", reason: "each chart has its own policy", chart: charts.WordPress,
			overrides: map[string]string{"medusa.replicas": "2"}, wantErr: `values["medusa.replicas"]: is not a value a tenant may set; …`},
		{name: "a map, not a value", reason: "only leaves are set", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.resources": "{}"}, wantErr: `values["wordpress.resources"]: is not a value a tenant may set; …`},
		{name: "the first refused key is named", reason: "keys are checked in order", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.replicas": "2", "wordpress.image.tag": "x", "storageClass": "y"},
			wantErr:   `values["storageClass"]: is not a value a tenant may set; …`},

		{name: "too many replicas", reason: "the chart's bound", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.replicas": "4"}, wantErr: `values["wordpress.replicas"]: must be at most 3`},
		{name: "no replicas", reason: "the setup Job needs a WordPress pod", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.replicas": "0"}, wantErr: `values["wordpress.replicas"]: must be at least 1`},
		{name: "replicas as text", reason: "typed as --set types it", chart: charts.Medusa,
			overrides: map[string]string{"medusa.replicas": "two"},
			wantErr:   `values["medusa.replicas"]: "two" is not allowed: use the number of Medusa server pods, 1 to 3`},
		{name: "more cores than a container may have", reason: "the plan's LimitRange", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.resources.limits.cpu": "3"}, wantErr: `values["wordpress.resources.limits.cpu"]: must be at most 2`},
		{name: "more millicores than a container may have", reason: "the plan's LimitRange", chart: charts.Medusa,
			overrides: map[string]string{"medusa.resources.limits.cpu": "2500m"},
			wantErr:   `values["medusa.resources.limits.cpu"]: "2500m" is not allowed: use a CPU quantity from 1m to 2 cores …`},
		{name: "more memory than a container may have", reason: "the plan's LimitRange", chart: charts.WordPress,
			overrides: map[string]string{"mariadb.resources.limits.memory": "5Gi"},
			wantErr:   `values["mariadb.resources.limits.memory"]: "5Gi" is not allowed: use a memory quantity from 16Mi to 4Gi …`},
		{name: "memory in bytes", reason: "typed as a number", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.resources.requests.memory": "1073741824"},
			wantErr:   `values["wordpress.resources.requests.memory"]: "1073741824" is typed as a number, as helm --set types it; use a memory quantity …`},
		{name: "unlimited php memory", reason: "bounded", chart: charts.WordPress,
			overrides: map[string]string{"wordpress.php.memoryLimit": "-1"}, wantErr: `values["wordpress.php.memoryLimit"]: "-1" is typed as a number, …`},
		{name: "currency in lowercase", reason: "ISO 4217", chart: charts.WordPress,
			overrides: map[string]string{"setup.currency": "eur"}, wantErr: `values["setup.currency"]: "eur" is not allowed: use the store's currency, …`},
		{name: "null", reason: "would remove the chart's default", chart: charts.WordPress,
			overrides: map[string]string{"setup.product.name": "null"}, wantErr: `values["setup.product.name"]: "null" is typed as null, …`},

		{name: "empty segment", reason: "a dotted path", chart: charts.WordPress,
			overrides: map[string]string{"wordpress..replicas": "1"}, wantErr: `values["wordpress..replicas"]: is not a dotted path of at most 8 names, such as wordpress.replicas`},
		{name: "leading dot", reason: "a dotted path", chart: charts.WordPress,
			overrides: map[string]string{".replicas": "1"}, wantErr: `values[".replicas"]: is not a dotted path …`},
		{name: "index", reason: "no lists", chart: charts.WordPress,
			overrides: map[string]string{"imagePullSecrets[0].name": "x"}, wantErr: `values["imagePullSecrets[0].name"]: is not a dotted path …`},
		{name: "too deep", reason: "bounded", chart: charts.WordPress,
			overrides: map[string]string{"a.b.c.d.e.f.g.h.i": "1"}, wantErr: `values["a.b.c.d.e.f.g.h.i"]: is not a dotted path …`},
		{name: "too long", reason: "bounded", chart: charts.WordPress,
			overrides: map[string]string{"setup.product.description": strings.Repeat("x", 1025)},
			wantErr:   `values["setup.product.description"]: is 1025 bytes long: use at most 1024`},
		{name: "control character", reason: "printable text only", chart: charts.WordPress,
			overrides: map[string]string{"setup.product.name": "a\nb"}, wantErr: `values["setup.product.name"]: contains control characters: use printable characters only`},
		{name: "not UTF-8", reason: "printable text only", chart: charts.WordPress,
			overrides: map[string]string{"setup.product.name": "a\xffb"}, wantErr: `values["setup.product.name"]: contains control characters: …`},
		{name: "too many keys", reason: "bounded", chart: charts.WordPress,
			overrides: manyKeys(charts.MaxOverrides + 1), wantErr: `values: has 51 keys: give at most 50`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tenantPolicy(t, tt.chart).Check(tt.overrides)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil (%s)", err, tt.reason)
				}
				return
			}
			var refused *charts.RefusedError
			if !errors.As(err, &refused) {
				t.Fatalf("Check = %v, want a *RefusedError (%s)", err, tt.reason)
			}
			want, prefix := strings.CutSuffix(tt.wantErr, "…")
			if got := err.Error(); prefix && !strings.HasPrefix(got, want) || !prefix && got != want {
				t.Errorf("Check error (%s):\n got %s\nwant %s", tt.reason, got, tt.wantErr)
			}
		})
	}
}

func manyKeys(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m[fmt.Sprintf("key%d", i)] = "x"
	}
	return m
}

func TestTenantPolicyTypesValuesAsHelmSet(t *testing.T) {
	got, err := tenantPolicy(t, charts.WordPress).Values(map[string]string{
		"wordpress.replicas": "2", "wordpress.resources.limits.cpu": "1", "wordpress.resources.requests.cpu": "0.5",
		"setup.product.regularPrice": "007", "setup.product.name": "true story",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"wordpress": map[string]any{
			"replicas":  int64(2),
			"resources": map[string]any{"limits": map[string]any{"cpu": int64(1)}, "requests": map[string]any{"cpu": "0.5"}},
		},
		"setup": map[string]any{"product": map[string]any{"regularPrice": "007", "name": "true story"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Values (-want +got):\n%s", diff)
	}
}

func TestParseSetValueTypesAsHelmSet(t *testing.T) {
	for in, want := range map[string]any{
		"true": true, "false": false, "null": nil, "0": int64(0), "42": int64(42), "-3": int64(-3),
		"0123": "0123", "-012": "-012", "1.5": "1.5", "True": "True", "": "", "1e3": "1e3", "99999999999999999999": "99999999999999999999",
	} {
		if got := charts.ParseSetValue(in); !cmp.Equal(got, want) {
			t.Errorf("ParseSetValue(%q) = %#v, want %#v", in, got, want)
		}
	}
}

func TestChartWithoutTenantSchemaAdmitsNoOverride(t *testing.T) {
	c := loadChart(t, charts.WordPress)
	c.Files = slices.DeleteFunc(c.Files, func(f *chart.File) bool { return f.Name == charts.TenantSchemaFile })
	p, err := charts.TenantPolicyOf(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(nil); err != nil {
		t.Errorf("Check(no overrides) = %v, want nil", err)
	}
	want := `values["wordpress.replicas"]: is not a value a tenant may set; allowed: none: this chart version declares no values a tenant may set`
	if err := p.Check(map[string]string{"wordpress.replicas": "2"}); err == nil || err.Error() != want {
		t.Errorf("Check = %v, want %s", err, want)
	}
	var nilPolicy *charts.TenantPolicy
	if err := nilPolicy.Check(map[string]string{"wordpress.replicas": "2"}); err == nil {
		t.Error("a nil policy admitted an override")
	}
}

func TestLoadedChartCarriesItsTenantPolicy(t *testing.T) {
	p, err := charts.TenantPolicyOf(loadChart(t, charts.Medusa))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tenantPolicy(t, charts.Medusa).AllowedKeys(), p.AllowedKeys()); diff != "" {
		t.Errorf("allowed keys of the loaded chart (-embedded +loaded):\n%s", diff)
	}
}

func TestLoadTenantPolicyRefusesOpenOrUndescribedSchemas(t *testing.T) {
	tests := []struct {
		name, schema, wantErr string
	}{
		{"open object", `{"type":"object","properties":{"a":{"description":"x"}}}`, "the schema must set additionalProperties: false"},
		{"open nested object", `{"type":"object","additionalProperties":false,"properties":{"a":{"type":"object","additionalProperties":true,"properties":{"b":{"description":"x"}}}}}`, "value a must set additionalProperties: false"},
		{"leaf without description", `{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}}`, "value a has no description"},
		{"foreign reference", `{"type":"object","additionalProperties":false,"properties":{"a":{"$ref":"other.json#/x"}}}`, "value a: $ref"},
		{"not a schema", `[1]`, "not a JSON Schema object"},
		{"not JSON", `{`, "is not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := charts.LoadTenantPolicy([]byte(tt.schema))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadTenantPolicy = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// tenantLeaves returns the leaf schemas of chart name's tenant schema by
// dotted path, read as plain JSON.
func tenantLeaves(t *testing.T, name string) map[string]map[string]any {
	t.Helper()
	root := readJSON(t, path.Join(name, charts.TenantSchemaFile))
	leaves := map[string]map[string]any{}
	var walk func(node map[string]any, prefix string)
	walk = func(node map[string]any, prefix string) {
		node = deref(t, root, node)
		props, ok := node["properties"].(map[string]any)
		if !ok {
			leaves[prefix] = node
			return
		}
		for k, v := range props {
			walk(v.(map[string]any), strings.TrimPrefix(prefix+"."+k, "."))
		}
	}
	walk(root, "")
	return leaves
}

func readJSON(t *testing.T, p string) map[string]any {
	t.Helper()
	data, err := fs.ReadFile(charts.FS, p)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return doc
}

// deref follows node's local $ref, if it has one.
func deref(t *testing.T, root, node map[string]any) map[string]any {
	t.Helper()
	for node["$ref"] != nil {
		name, ok := strings.CutPrefix(node["$ref"].(string), "#/$defs/")
		if !ok {
			t.Fatalf("$ref %v is not local", node["$ref"])
		}
		node = root["$defs"].(map[string]any)[name].(map[string]any)
	}
	return node
}

func TestTenantValuesAreChartValues(t *testing.T) {
	for _, spec := range specs {
		t.Run(spec.name, func(t *testing.T) {
			leaves := tenantLeaves(t, spec.name)
			if diff := cmp.Diff(tenantPolicy(t, spec.name).AllowedKeys(), slices.Sorted(maps.Keys(leaves))); diff != "" {
				t.Errorf("AllowedKeys are not the schema's leaves (-AllowedKeys +leaves):\n%s", diff)
			}
			chartSchema := readJSON(t, path.Join(spec.name, "values.schema.json"))
			data, err := fs.ReadFile(charts.FS, path.Join(spec.name, "values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			defaults, err := chartutil.ReadValues(data)
			if err != nil {
				t.Fatal(err)
			}
			for key := range leaves {
				node := chartSchema
				for _, name := range strings.Split(key, ".") {
					props, _ := deref(t, chartSchema, node)["properties"].(map[string]any)
					next, ok := props[name].(map[string]any)
					if !ok {
						t.Errorf("%s is not a value of values.schema.json", key)
						break
					}
					node = next
				}
				if _, err := defaults.PathValue(key); err != nil {
					t.Errorf("%s is not a value of values.yaml: %v", key, err)
				}
			}
		})
	}
}

func TestTenantValueExamplesRender(t *testing.T) {
	for _, spec := range specs {
		c := loadChart(t, spec.name)
		p := tenantPolicy(t, spec.name)
		for key, leaf := range tenantLeaves(t, spec.name) {
			examples, _ := leaf["examples"].([]any)
			if len(examples) == 0 {
				t.Errorf("%s/%s: no examples; the test renders the chart with each", spec.name, key)
			}
			for _, ex := range examples {
				t.Run(fmt.Sprintf("%s/%s=%v", spec.name, key, ex), func(t *testing.T) {
					overrides := map[string]string{key: fmt.Sprint(ex)}
					vals, err := p.Values(overrides)
					if err != nil {
						t.Fatalf("the policy refuses its own example: %v", err)
					}
					maps.Copy(vals, storeValues())
					if _, err := render(t, c, releaseName, vals); err != nil {
						t.Errorf("the chart refuses a value its tenant policy admits: %v", err)
					}
				})
			}
		}
	}
}
