package charts_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"helm.sh/helm/v3/pkg/chart"

	charts "github.com/storeprov/storeprov/helm"
	"github.com/storeprov/storeprov/helm/chartstest"
)

var expand = chartstest.Expand

func TestExpandFollowsTheKubelet(t *testing.T) {
	env := map[string]string{"A": "x", "B": "$(A)"}
	lookup := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	for in, want := range map[string]string{
		"$(A)": "x", "$$(A)": "$(A)", "$$$(A)": "$x", "$$$$(A)": "$$(A)", "$(B)": "$(A)", "$(C)": "$(C)",
		"$(A": "$(A", "$(A$$)": "$(A$$)", "$($$)$(A)": "$($$)x", "$": "$", "a$b": "a$b", "$$": "$", "$$$": "$$",
		"$(": "$(", "$()": "$()", "$(A)$(A)": "xx", "(A)": "(A)", "€$(A)€": "€x€",
	} {
		if got := expand(in, lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

// hostileTexts are store titles and product texts that the kubelet or a
// template would change if they reached a container unescaped.
var hostileTexts = []struct{ name, text string }{
	{"reference to the key seed", "$(STOREPROV_KEY_SEED)"},
	{"reference to the admin password", "$(ADMIN_PASSWORD)"},
	{"escaped reference", "$$(STOREPROV_KEY_SEED)"},
	{"escape then reference", "$$$(ADMIN_PASSWORD)"},
	{"references inside text", "Shop $(WORDPRESS_DB_PASSWORD) & $(DB_PASSWORD)!"},
	{"template", "{{ .Values }}"},
	{"template call", `{{ include "wordpress-store.title" . }}`},
	{"lone dollar", "$"},
	{"dollars", "$$ $$$ $"},
	{"unclosed reference", "$(ADMIN_PASSWORD"},
	{"shell substitution", "$(whoami) `id` ${HOME} $HOME"},
	{"quotes", `"Joe's" 'shop' "`},
	{"backslashes", `C:\shop\$(ADMIN_PASSWORD)\\ \n \" \`},
	{"YAML syntax", "- a: b # c &x *x !!binary | > % @ [ ] { } ,"},
	{"leading and trailing spaces", "  Shop  "},
	{"63 multi-byte characters", strings.Repeat("店🛒é", 21)},
	{"combining and invisible characters", "e\u0301\u200b\u2028\u2029\ufeff\u00ad"},
	{"newline and tab in the title", "Corner\nShop\t$(ADMIN_PASSWORD)"},
}

// neutralText is the text the charts are first rendered with, to tell what
// the store's text changes.
const neutralText = "Plain text"

// containerView is what the process of one container is given, after the
// kubelet's expansion.
type containerView struct {
	// env values by name; a value from a Secret is "<secret NAME>".
	env map[string]string
	// argv is the command then the args.
	argv []string
}

// kubeletView returns what each container of the rendered workloads is
// given, by "kind name/container". Env values expand with the variables
// declared before them, command and args with all of them.
func kubeletView(t testing.TB, o objects) map[string]containerView {
	t.Helper()
	out := map[string]containerView{}
	for _, w := range o.workloads(t) {
		for _, ctr := range allContainers(w.template.Spec) {
			defined := chartstest.ExpandEnv(ctr.Env)
			lookup := func(n string) (string, bool) { v, ok := defined[n]; return v, ok }
			var argv []string
			for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
				argv = append(argv, expand(a, lookup))
			}
			out[fmt.Sprintf("%s %s/%s", w.kind, w.name, ctr.Name)] = containerView{env: defined, argv: argv}
		}
	}
	return out
}

// envTextChart is one chart rendered with neutral text.
type envTextChart struct {
	spec    chartSpec
	chart   *chart.Chart
	policy  *charts.TenantPolicy
	neutral map[string]containerView
}

func envTextCharts(t testing.TB) []envTextChart {
	t.Helper()
	var out []envTextChart
	for _, spec := range specs {
		c := envTextChart{spec: spec, chart: loadChart(t, spec.name)}
		p, err := charts.TenantPolicyFor(spec.name)
		if err != nil {
			t.Fatal(err)
		}
		c.policy = p
		c.neutral = c.view(t, neutralText)
		out = append(out, c)
	}
	return out
}

// view renders the chart as the orchestrator would for a store titled
// text whose owner set every user text of the chart to text (where the
// tenant policy admits it: the neutral text where it does not), and
// returns what its containers are given.
func (c envTextChart) view(t testing.TB, text string) map[string]containerView {
	t.Helper()
	vals, err := c.policy.Values(c.overrides(text))
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(vals, storeValues())
	vals["title"] = text
	rel, err := render(t, c.chart, releaseName, vals)
	if err != nil {
		t.Fatalf("%s with text %q: cannot render: %v", c.spec.name, text, err)
	}
	return kubeletView(t, decode(t, rel.Manifest))
}

// overrides sets each user text key of the tenant policy to text, or to
// the neutral text when the policy refuses text.
func (c envTextChart) overrides(text string) map[string]string {
	out := map[string]string{}
	for _, key := range c.spec.userText {
		if key == "title" {
			continue
		}
		out[key] = text
		if c.policy.Check(map[string]string{key: text}) != nil {
			out[key] = neutralText
		}
	}
	return out
}

// check renders the chart with text and fails unless every env var that
// carries user text is given it exactly, and nothing else a container is
// given changes with it.
func (c envTextChart) check(t testing.TB, text string) {
	t.Helper()
	want := c.overrides(text)
	want["title"] = text
	got := c.view(t, text)
	if diff := slices.Compare(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(c.neutral))); diff != 0 {
		t.Fatalf("%s: the containers change with the text %q", c.spec.name, text)
	}
	for where, v := range got {
		for name, value := range v.env {
			key, carries := c.spec.userText[name]
			switch {
			case carries && value != want[key]:
				t.Errorf("%s: %s env %s is %q after the kubelet's expansion, want %s exactly: %q", c.spec.name, where, name, value, key, want[key])
			case !carries && value != c.neutral[where].env[name]:
				t.Errorf("%s: %s env %s changes with the store's text (%q with %q): pass the text through envText and list %s in the chart's userText",
					c.spec.name, where, name, value, text, name)
			}
		}
		if !slices.Equal(v.argv, c.neutral[where].argv) {
			t.Errorf("%s: %s command or args change with the store's text %q: %q", c.spec.name, where, text, v.argv)
		}
	}
}

func TestUserTextReachesContainersUnexpanded(t *testing.T) {
	for _, c := range envTextCharts(t) {
		for _, tt := range hostileTexts {
			t.Run(c.spec.name+"/"+tt.name, func(t *testing.T) { c.check(t, tt.text) })
		}
	}
}

// FuzzEnvTextSurvivesExpansion renders both charts with the fuzzed text as
// the store's title and product texts. Its seed corpus, under
// testdata/fuzz, holds hostileTexts.
func FuzzEnvTextSurvivesExpansion(f *testing.F) {
	all := envTextCharts(f)
	f.Fuzz(func(t *testing.T, text string) {
		// What the api refuses, and what the chart's title cannot hold.
		if text == "" || !utf8.ValidString(text) || strings.ContainsFunc(text, unicode.IsControl) || utf8.RuneCountInString(text) > 200 {
			t.Skip("not a text the api accepts")
		}
		for _, c := range all {
			c.check(t, text)
		}
	})
}
