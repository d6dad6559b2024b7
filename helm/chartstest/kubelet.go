package chartstest

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Expand expands s as the kubelet expands a container's env values,
// command and args: "$$" is "$"; "$(NAME)" is the value lookup gives NAME,
// or stays as written when NAME is not defined; a "$(" with no ")" after
// it stays as written, and so does any other "$".
func Expand(s string, lookup func(name string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// ExpandEnv returns a container's environment as its process sees it:
// each value expanded with the variables declared before it. A value from
// a Secret or elsewhere (valueFrom) is "<secret NAME>".
func ExpandEnv(env []corev1.EnvVar) map[string]string {
	defined := map[string]string{}
	lookup := func(n string) (string, bool) { v, ok := defined[n]; return v, ok }
	for _, e := range env {
		if e.ValueFrom != nil {
			defined[e.Name] = "<secret " + e.Name + ">"
			continue
		}
		defined[e.Name] = Expand(e.Value, lookup)
	}
	return defined
}
