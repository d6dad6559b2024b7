// Package devstacktest starts the platform of package devstack in tests:
// it finds the repository, builds the services' binaries once per test
// process, and prints the services' logs when a test fails.
package devstacktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/storeprov/storeprov/deploy/devstack"
)

// Root returns the repository's root: the nearest directory above the
// test's working directory that holds go.work.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the test's directory: run the test inside the repository")
		}
		dir = parent
	}
}

type build struct {
	once sync.Once
	dir  string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// Binaries builds the services names (every one when none is named, as
// devstack.Build does) once per test process, into a temporary directory
// that it returns to every later call with the same names. TestMain
// removes the directories with RemoveBinaries.
func Binaries(names ...string) (string, error) {
	key := strings.Join(names, " ")
	buildsMu.Lock()
	b, ok := builds[key]
	if !ok {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() {
		root, err := Root()
		if err != nil {
			b.err = err
			return
		}
		if b.dir, b.err = os.MkdirTemp("", "storeprov-test-bin"); b.err != nil {
			return
		}
		if err := devstack.Build(context.Background(), root, b.dir, names...); err != nil {
			b.err = fmt.Errorf("cannot build %s: %w", orAll(key), err)
		}
	})
	return b.dir, b.err
}

func orAll(names string) string {
	if names == "" {
		return "the services"
	}
	return names
}

// RemoveBinaries removes the directories that Binaries built into; a
// TestMain calls it after m.Run.
func RemoveBinaries() {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	for key, b := range builds {
		if b.dir != "" {
			_ = os.RemoveAll(b.dir) // a temporary directory: a leftover is harmless
		}
		delete(builds, key)
	}
}

// Start starts a stack of cfg for the test: cfg.Root is found by Root when
// empty, cfg.BinDir built by Binaries (every service) when empty. It fails
// the test when the stack does not start and stops the stack when the
// test ends. With cfg.Logs nil, it keeps the services' output and prints
// it when the stack does not start or the test failed; a caller that
// passes its own writer prints it itself after the start (a *devstack.Logs
// is still printed when the stack does not start).
func Start(t *testing.T, cfg devstack.Config) *devstack.Stack {
	t.Helper()
	var err error
	if cfg.Root == "" {
		if cfg.Root, err = Root(); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.BinDir == "" {
		if cfg.BinDir, err = Binaries(); err != nil {
			t.Fatal(err)
		}
	}
	own := cfg.Logs == nil
	if own {
		cfg.Logs = &devstack.Logs{}
	}
	logs, _ := cfg.Logs.(*devstack.Logs)
	s, err := devstack.Start(context.Background(), cfg)
	if err != nil {
		if logs != nil {
			t.Fatalf("cannot start the stack: %v\nservice logs:\n%s", err, logs.String())
		}
		t.Fatalf("cannot start the stack: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if own && t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	return s
}
