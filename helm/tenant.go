package charts

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"helm.sh/helm/v3/pkg/chart"
)

// TenantSchemaFile is the file of a store chart that declares the values a
// store's owner may override (UpgradeStore's values, storectl upgrade
// --set): a JSON Schema whose objects admit no property they do not name
// (additionalProperties: false) and whose every leaf has a description of
// what it takes, which error messages quote. Every leaf must also be a
// value of the chart's values.schema.json and values.yaml. A chart without
// this file admits no overrides at all.
const TenantSchemaFile = "tenant-values.schema.json"

// Limits of a tenant's overrides, whatever the chart.
const (
	// MaxOverrides is the most keys one set of overrides may have.
	MaxOverrides = 50
	// MaxOverrideLength is the longest value, in bytes.
	MaxOverrideLength = 1024
	// maxKeySegments is the most names a dotted key may have.
	maxKeySegments = 8
)

// keyPattern is a dotted path of value names, such as wordpress.replicas.
var keyPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$`)

// TenantPolicy is what a tenant may override in the values of one chart,
// as the chart's TenantSchemaFile declares it. The api checks a store's
// overrides against the policy of the embedded chart of its engine; the
// orchestrator checks them again against the chart version it installs.
// A nil or zero TenantPolicy admits no override. It does not change once
// loaded and is safe for concurrent use.
type TenantPolicy struct {
	schema *jsonschema.Schema
	// leaves are the descriptions of the values a tenant may set, by
	// dotted path.
	leaves map[string]string
}

// RefusedError is a set of overrides a TenantPolicy refuses. Its message
// names the key and says what is allowed instead.
type RefusedError struct {
	// Key is the refused dotted key; empty when the overrides are refused
	// as a whole (too many).
	Key string
	// Reason says what is wrong with the key or its value, and what is
	// allowed.
	Reason string
}

// Field names what was refused as a request field: values["key"], or
// values when the overrides are refused as a whole.
func (e *RefusedError) Field() string {
	if e.Key == "" {
		return "values"
	}
	return fmt.Sprintf("values[%q]", e.Key)
}

func (e *RefusedError) Error() string { return e.Field() + ": " + e.Reason }

// LoadTenantPolicy compiles a TenantSchemaFile. It fails when the schema
// does not compile, has an object that admits properties it does not
// name, a leaf without a description, or a reference other than to its
// own #/$defs.
func LoadTenantPolicy(schemaJSON []byte) (*TenantPolicy, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("%s is not JSON: %w", TenantSchemaFile, err)
	}
	root, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is not a JSON Schema object", TenantSchemaFile)
	}
	// Walked first, so that no reference outside the file is ever loaded.
	p := &TenantPolicy{leaves: map[string]string{}}
	if err := p.walk(root, root, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", TenantSchemaFile, err)
	}
	const url = "mem:///" + TenantSchemaFile
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", TenantSchemaFile, err)
	}
	if p.schema, err = c.Compile(url); err != nil {
		return nil, fmt.Errorf("%s is not a valid JSON Schema: %w", TenantSchemaFile, err)
	}
	return p, nil
}

// TenantPolicyFor returns the policy of the embedded chart name (WordPress
// or Medusa). A chart without a TenantSchemaFile is an error here: every
// embedded store chart has one.
func TenantPolicyFor(name string) (*TenantPolicy, error) {
	data, err := fs.ReadFile(FS, path.Join(name, TenantSchemaFile))
	if err != nil {
		return nil, fmt.Errorf("embedded chart %q has no %s: use %s or %s", name, TenantSchemaFile, WordPress, Medusa)
	}
	p, err := LoadTenantPolicy(data)
	if err != nil {
		return nil, fmt.Errorf("embedded chart %s: %w", name, err)
	}
	return p, nil
}

// TenantPolicyOf returns the policy of a loaded chart, read from its
// TenantSchemaFile (Helm's loader keeps it in ch.Files). A chart without
// one gets a policy that admits no override.
func TenantPolicyOf(ch *chart.Chart) (*TenantPolicy, error) {
	for _, f := range ch.Files {
		if f.Name == TenantSchemaFile {
			p, err := LoadTenantPolicy(f.Data)
			if err != nil {
				return nil, fmt.Errorf("chart %s %s: %w", ch.Name(), ch.Metadata.Version, err)
			}
			return p, nil
		}
	}
	return &TenantPolicy{}, nil
}

// walk records the leaves under node, the schema at dotted path prefix.
func (p *TenantPolicy) walk(root, node map[string]any, prefix string) error {
	for depth := 0; node["$ref"] != nil; depth++ {
		ref, _ := node["$ref"].(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := root["$defs"].(map[string]any)
		target, found := defs[name].(map[string]any)
		if !ok || !found || depth > 8 {
			return fmt.Errorf("%s: $ref %q does not name one of the schema's own #/$defs", describePath(prefix), ref)
		}
		node = target
	}
	props, isObject := node["properties"].(map[string]any)
	if !isObject {
		if prefix == "" {
			return errors.New("the schema must be an object of named properties")
		}
		desc, _ := node["description"].(string)
		if desc == "" {
			return fmt.Errorf("%s has no description: error messages quote it to say what the value takes", describePath(prefix))
		}
		p.leaves[prefix] = desc
		return nil
	}
	if open, isBool := node["additionalProperties"].(bool); !isBool || open {
		return fmt.Errorf("%s must set additionalProperties: false: a tenant may set only what the schema names", describePath(prefix))
	}
	for _, name := range slices.Sorted(maps.Keys(props)) {
		child, ok := props[name].(map[string]any)
		if !ok {
			return fmt.Errorf("%s is not a schema object", describePath(joinKey(prefix, name)))
		}
		if err := p.walk(root, child, joinKey(prefix, name)); err != nil {
			return err
		}
	}
	return nil
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func describePath(p string) string {
	if p == "" {
		return "the schema"
	}
	return "value " + p
}

// AllowedKeys returns the dotted keys a tenant may set, sorted: the leaves
// of the schema.
func (p *TenantPolicy) AllowedKeys() []string {
	if p == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(p.leaves))
}

// Check refuses overrides the policy does not admit with a *RefusedError
// naming the first offending key (in key order) and what is allowed: more
// than MaxOverrides keys, a key that is not a dotted path or not a value a
// tenant may set, a value longer than MaxOverrideLength bytes, not UTF-8
// or with control characters, or a value the schema refuses once typed as
// helm --set types it (see ParseSetValue).
func (p *TenantPolicy) Check(overrides map[string]string) error {
	_, err := p.Values(overrides)
	return err
}

// Values checks overrides (see Check) and returns them as nested values,
// typed as helm --set types them: {"wordpress.replicas": "2"} is
// {"wordpress": {"replicas": 2}}. The map is new on every call.
func (p *TenantPolicy) Values(overrides map[string]string) (map[string]any, error) {
	if n := len(overrides); n > MaxOverrides {
		return nil, &RefusedError{Reason: fmt.Sprintf("has %d keys: give at most %d", n, MaxOverrides)}
	}
	out := map[string]any{}
	for _, key := range slices.Sorted(maps.Keys(overrides)) {
		v := overrides[key]
		refuse := func(format string, a ...any) error { return &RefusedError{Key: key, Reason: fmt.Sprintf(format, a...)} }
		switch _, allowed := p.leafOf(key); {
		case !keyPattern.MatchString(key) || strings.Count(key, ".") >= maxKeySegments:
			return nil, refuse("is not a dotted path of at most %d names, such as wordpress.replicas", maxKeySegments)
		case !allowed:
			return nil, refuse("is not a value a tenant may set; allowed: %s", p.allowedList())
		case len(v) > MaxOverrideLength:
			return nil, refuse("is %d bytes long: use at most %d", len(v), MaxOverrideLength)
		case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
			return nil, refuse("contains control characters: use printable characters only")
		}
		// Leaves are never prefixes of one another: the path is free.
		m := out
		names := strings.Split(key, ".")
		for _, name := range names[:len(names)-1] {
			next, ok := m[name].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[name] = next
			}
			m = next
		}
		m[names[len(names)-1]] = ParseSetValue(v)
	}
	if len(out) == 0 {
		return out, nil
	}
	if err := p.schema.Validate(out); err != nil {
		return nil, p.refusal(err, overrides)
	}
	return out, nil
}

func (p *TenantPolicy) leafOf(key string) (string, bool) {
	if p == nil {
		return "", false
	}
	desc, ok := p.leaves[key]
	return desc, ok
}

func (p *TenantPolicy) allowedList() string {
	keys := p.AllowedKeys()
	if len(keys) == 0 {
		return "none: this chart version declares no values a tenant may set"
	}
	return strings.Join(keys, ", ")
}

// refusal turns the schema's verdict on allowed keys into a *RefusedError
// about the first key in key order that it refuses.
func (p *TenantPolicy) refusal(err error, overrides map[string]string) error {
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return &RefusedError{Reason: fmt.Sprintf("cannot be checked: %v", err)}
	}
	var leaves []*jsonschema.ValidationError
	var collect func(e *jsonschema.ValidationError)
	collect = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, e)
		}
		for _, c := range e.Causes {
			collect(c)
		}
	}
	collect(verr)
	slices.SortStableFunc(leaves, func(a, b *jsonschema.ValidationError) int {
		return strings.Compare(strings.Join(a.InstanceLocation, "."), strings.Join(b.InstanceLocation, "."))
	})
	for _, l := range leaves {
		key := strings.Join(l.InstanceLocation, ".")
		desc, ok := p.leafOf(key)
		if !ok {
			continue
		}
		v := overrides[key]
		var reason string
		switch k := l.ErrorKind.(type) {
		case *kind.Maximum:
			reason = "must be at most " + k.Want.RatString()
		case *kind.Minimum:
			reason = "must be at least " + k.Want.RatString()
		case *kind.Type:
			if k.Got == "string" {
				reason = fmt.Sprintf("%q is not allowed: use %s", v, desc)
				break
			}
			reason = fmt.Sprintf("%q is typed as %s, as helm --set types it; use %s", v, typeName(k.Got), desc)
		default:
			reason = fmt.Sprintf("%q is not allowed: use %s", v, desc)
		}
		return &RefusedError{Key: key, Reason: reason}
	}
	// The schema refused something no leaf stands for: report it whole.
	return &RefusedError{Reason: fmt.Sprintf("are refused by %s: %v", TenantSchemaFile, err)}
}

func typeName(jsonType string) string {
	switch jsonType {
	case "integer", "number":
		return "a number"
	case "boolean":
		return "a boolean"
	case "null":
		return "null"
	}
	return jsonType
}

// ParseSetValue types a value as helm --set does: true, false and null
// are typed, so are integers without leading zeros; anything else is a
// string.
func ParseSetValue(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && (s == "0" || !strings.HasPrefix(strings.TrimPrefix(s, "-"), "0")) {
		return n
	}
	return s
}
