package helmaction

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// StoreValues are what the platform sets for every store; Values sets
// them last, so nobody overrides them.
type StoreValues struct {
	StoreID    string
	BaseDomain string
	// Title is the store's display name.
	Title string
}

// keyPattern is a dotted path of value names, such as
// wordpress.resources.limits.cpu.
var keyPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$`)

// reservedKeys are set by the platform or point the chart at the store's
// credentials: an override may not touch them, nor anything under them.
var reservedKeys = []string{"storeId", "baseDomain", "title", "fullnameOverride", "existingSecret"}

// Values builds a store's release values: base (the installation's
// settings, such as ingress and storageClass), then overrides (the user's
// --set pairs by dotted path, typed as Helm's --set types them: true,
// false, integers, null, else strings), then store. An override of a
// reserved key or a malformed key is ErrInvalidValues. The result is a
// fresh map that shares nothing with base.
func Values(base map[string]any, overrides map[string]string, store StoreValues) (map[string]any, error) {
	vals, err := deepCopy(base)
	if err != nil {
		return nil, err
	}
	for _, key := range slices.Sorted(maps.Keys(overrides)) {
		if !keyPattern.MatchString(key) {
			return nil, fmt.Errorf("%w: key %q is not a dotted path of names like wordpress.replicas", ErrInvalidValues, key)
		}
		for _, r := range reservedKeys {
			if key == r || strings.HasPrefix(key, r+".") {
				return nil, fmt.Errorf("%w: key %q is set by the platform and cannot be overridden", ErrInvalidValues, key)
			}
		}
		if err := set(vals, strings.Split(key, "."), typed(overrides[key])); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidValues, key, err)
		}
	}
	vals["storeId"] = store.StoreID
	vals["baseDomain"] = store.BaseDomain
	if store.Title != "" {
		vals["title"] = store.Title
	}
	return vals, nil
}

// Normalize returns values as JSON decodes them (numbers as float64,
// nested maps as map[string]any), the form Helm stores a revision's
// values in, so that desired and recorded values compare equal.
func Normalize(values map[string]any) (map[string]any, error) {
	return deepCopy(values)
}

func set(m map[string]any, path []string, v any) error {
	for i, name := range path[:len(path)-1] {
		next, ok := m[name].(map[string]any)
		if !ok {
			if _, exists := m[name]; exists && m[name] != nil {
				return fmt.Errorf("%s is not a map of values", strings.Join(path[:i+1], "."))
			}
			next = map[string]any{}
			m[name] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
	return nil
}

// typed converts a --set value as Helm does: booleans, null and integers
// (without leading zeros) are typed, anything else is a string.
func typed(s string) any {
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

func deepCopy(m map[string]any) (map[string]any, error) {
	out := map[string]any{}
	if len(m) == 0 {
		return out, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cannot copy values: %w", err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("cannot copy values: %w", err)
	}
	return out, nil
}
