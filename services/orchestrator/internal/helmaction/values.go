package helmaction

import (
	"encoding/json"
	"fmt"

	charts "github.com/storeprov/storeprov/helm"
)

// StoreValues are what the platform sets for every store; Values sets
// them last, so nobody overrides them.
type StoreValues struct {
	StoreID    string
	BaseDomain string
	// Title is the store's display name.
	Title string
	// OrderCheck, when not nil, sets orderCheck.enabled: whether this
	// install or upgrade runs the chart's order check. Leave it nil for a
	// chart that has none (catalog.Catalog.HasOrderCheck), whose schema
	// refuses the value.
	OrderCheck *bool
}

// Values builds a store's release values: base (the installation's
// settings, such as ingress and storageClass), then overrides (the store
// owner's --set pairs by dotted path, typed as helm --set types them), then
// store, set last so that nothing overrides them. policy is the tenant
// policy of the chart the values are for: an override it refuses is a
// *charts.RefusedError naming the key and what is allowed; a nil policy
// admits none. The result is a fresh map that shares nothing with base.
func Values(base map[string]any, overrides map[string]string, policy *charts.TenantPolicy, store StoreValues) (map[string]any, error) {
	vals, err := deepCopy(base)
	if err != nil {
		return nil, err
	}
	tenant, err := policy.Values(overrides)
	if err != nil {
		return nil, err
	}
	merge(vals, tenant)
	vals["storeId"] = store.StoreID
	vals["baseDomain"] = store.BaseDomain
	if store.Title != "" {
		vals["title"] = store.Title
	}
	if store.OrderCheck != nil {
		merge(vals, map[string]any{"orderCheck": map[string]any{"enabled": *store.OrderCheck}})
	}
	return vals, nil
}

// Normalize returns values as JSON decodes them (numbers as float64,
// nested maps as map[string]any), the form Helm stores a revision's
// values in, so that desired and recorded values compare equal.
func Normalize(values map[string]any) (map[string]any, error) {
	return deepCopy(values)
}

// merge writes src into dst: maps merge key by key, anything else
// replaces what dst holds.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if from, ok := v.(map[string]any); ok {
			if into, ok := dst[k].(map[string]any); ok {
				merge(into, from)
				continue
			}
		}
		dst[k] = v
	}
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
