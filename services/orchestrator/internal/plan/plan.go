// Package plan holds the sizes of store namespaces: the ResourceQuota,
// LimitRange and Pod Security level each plan gives a store. Plans come
// from a YAML file, never from code.
package plan

import (
	_ "embed"
	"fmt"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

//go:embed plans.yaml
var defaultPlans []byte

// Plan sizes one store namespace.
type Plan struct {
	// PodSecurity is the Pod Security Standard level enforced: privileged,
	// baseline or restricted.
	PodSecurity string `json:"podSecurity"`
	// Quota is the ResourceQuota's hard limits.
	Quota corev1.ResourceList `json:"quota"`
	// Limits is the LimitRange.
	Limits Limits `json:"limits"`
}

// Limits are the LimitRange's items.
type Limits struct {
	Container             Bounds `json:"container"`
	PersistentVolumeClaim Bounds `json:"persistentVolumeClaim"`
}

// Bounds are one LimitRange item; empty lists are left out.
type Bounds struct {
	DefaultRequest corev1.ResourceList `json:"defaultRequest,omitempty"`
	Default        corev1.ResourceList `json:"default,omitempty"`
	Min            corev1.ResourceList `json:"min,omitempty"`
	Max            corev1.ResourceList `json:"max,omitempty"`
}

// Plans are the plans by name.
type Plans map[string]Plan

// Default returns the plans shipped with the orchestrator.
func Default() Plans {
	p, err := Parse(defaultPlans)
	if err != nil {
		panic(fmt.Sprintf("embedded plans.yaml is invalid: %v", err))
	}
	return p
}

// Load reads plans from a YAML file.
func Load(path string) (Plans, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read plans: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("plans file %s: %w", path, err)
	}
	return p, nil
}

// Parse decodes and validates plans; unknown fields are errors so that a
// typo is not silently ignored.
func Parse(b []byte) (Plans, error) {
	var p Plans
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return nil, fmt.Errorf("invalid plans: %w", err)
	}
	if len(p) == 0 {
		return nil, fmt.Errorf("no plans defined: define at least one plan with quota and limits")
	}
	for name, pl := range p {
		switch pl.PodSecurity {
		case "privileged", "baseline", "restricted":
		default:
			return nil, fmt.Errorf("plan %q: podSecurity %q is not a Pod Security level: use privileged, baseline or restricted", name, pl.PodSecurity)
		}
		if len(pl.Quota) == 0 {
			return nil, fmt.Errorf("plan %q has no quota: a store namespace without a ResourceQuota is unbounded", name)
		}
	}
	return p, nil
}

// Get returns the named plan.
func (p Plans) Get(name string) (Plan, error) {
	pl, ok := p[name]
	if !ok {
		names := make([]string, 0, len(p))
		for n := range p {
			names = append(names, n)
		}
		sort.Strings(names)
		return Plan{}, fmt.Errorf("unknown plan %q: use one of %s", name, strings.Join(names, ", "))
	}
	return pl, nil
}
