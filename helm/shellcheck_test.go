package charts_test

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	charts "github.com/storeprov/storeprov/helm"
)

// shellScript is a script the charts run, and where it comes from.
type shellScript struct {
	where, dialect, text string
}

// TestShellScriptsPassShellcheck runs shellcheck on every script of the
// charts: their files/*.sh and the script of every container (and exec
// probe) that runs `sh -c` or `bash -c`, as rendered with each ci values
// file. It needs shellcheck on PATH (Debian's shellcheck package); CI
// installs it, elsewhere the test skips without it.
func TestShellScriptsPassShellcheck(t *testing.T) {
	if _, err := exec.LookPath("shellcheck"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("shellcheck is not on PATH; .ci/run installs Debian's shellcheck")
		}
		t.Skip("shellcheck is not on PATH (apt-get install shellcheck)")
	}
	var scripts []shellScript
	files, err := fs.Glob(charts.FS, "*/files/*.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := fs.ReadFile(charts.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		scripts = append(scripts, shellScript{f, "", string(b)})
	}
	for _, c := range renderCases(t) {
		for _, w := range c.objs.workloads(t) {
			for _, ctr := range allContainers(w.template.Spec) {
				where := fmt.Sprintf("%s: %s %s container %s", c, w.kind, w.name, ctr.Name)
				if s, ok := shellOf(append(slices.Clone(ctr.Command), ctr.Args...)); ok {
					s.where = where
					scripts = append(scripts, s)
				}
				for name, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe, "startup": ctr.StartupProbe} {
					if p == nil || p.Exec == nil {
						continue
					}
					if s, ok := shellOf(p.Exec.Command); ok {
						s.where = where + " " + name + " probe"
						scripts = append(scripts, s)
					}
				}
			}
		}
	}
	if len(scripts) == 0 {
		t.Fatal("no script found")
	}
	seen := map[string]bool{}
	checked := 0
	for _, s := range scripts {
		if seen[s.dialect+"\x00"+s.text] {
			continue
		}
		seen[s.dialect+"\x00"+s.text] = true
		args := []string{"--format=gcc"}
		if s.dialect != "" {
			args = append(args, "--shell="+s.dialect)
		}
		cmd := exec.Command("shellcheck", append(args, "-")...)
		cmd.Stdin = strings.NewReader(s.text)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("shellcheck %s:\n%s%v", s.where, out, err)
		}
		checked++
	}
	t.Logf("%d distinct scripts pass shellcheck", checked)
}

// shellOf returns the script of argv when it runs one with sh or bash -c.
func shellOf(argv []string) (shellScript, bool) {
	if len(argv) < 3 {
		return shellScript{}, false
	}
	shell := path.Base(argv[0])
	if (shell != "sh" && shell != "bash") || !strings.HasPrefix(argv[1], "-") || !strings.Contains(argv[1], "c") {
		return shellScript{}, false
	}
	return shellScript{dialect: shell, text: argv[2]}, true
}
