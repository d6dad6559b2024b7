//go:build unix

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/storeprov/storeprov/pkg/sandboxtest"
)

// chromiumPath is the browser the dashboard's end-to-end script drives:
// Debian's Chromium, which playwright-core launches without downloading one.
const chromiumPath = "/usr/bin/chromium"

// browserScreenshots are the pictures the script must leave in the artifacts
// folder; dashboard.png is the one docs/dashboard.png is copied from.
var browserScreenshots = []string{"create-form.png", "list.png", "dashboard.png", "detail.png", "delete-dialog.png", "create-form-error.png", "signin-oidc.png"}

// storeIDLine is how the script announces the store it created.
var storeIDLine = regexp.MustCompile(`\bstore-id ([a-z0-9]+)$`)

// TestDashboardInBrowser drives the dashboard the gateway serves in Chromium,
// against the whole platform: sign in, create a store and watch it become
// READY live, its detail page, deletion, a refused name, a refused token,
// then signing in with the development OpenID provider and signing out.
// The checks are in services/gateway/dashboard/e2e/dashboard.e2e.mjs; the
// screenshots go to deploy/e2e/artifacts.
func TestDashboardInBrowser(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dashboard := filepath.Join(root, "services", "gateway", "dashboard")
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("this test needs Chromium at %s: install it with `apt-get install -y chromium` (%v)", chromiumPath, err)
	}
	if _, err := os.Stat(filepath.Join(dashboard, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatalf("this test needs the dashboard's node_modules (playwright-core): run `make dashboard-test`, which runs npm ci in %s (%v)", dashboard, err)
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("this test needs Node.js 20.19 or later with npm on PATH: %v", err)
	}
	artifacts, err := filepath.Abs("artifacts")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range append([]string{"failure.png"}, browserScreenshots...) {
		if err := os.Remove(filepath.Join(artifacts, name)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}

	c := configs(t)[0]
	c.signIn = devSignIn
	s := startStack(t, c)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "run", "--silent", "e2e")
	cmd.Dir = dashboard
	cmd.Env = append(os.Environ(),
		"STOREPROV_URL="+s.GatewayURL,
		"STOREPROV_TOKEN="+s.Token,
		"STOREPROV_ARTIFACTS_DIR="+artifacts,
		"STOREPROV_CHROMIUM="+chromiumPath,
		"STOREPROV_OIDC_USERNAME=bob", "STOREPROV_OIDC_PASSWORD=bob-pw", "STOREPROV_OIDC_EXPECT_USER=bob",
	)
	// npm starts node, which starts Chromium: on timeout, stop the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w

	var (
		wg      sync.WaitGroup
		storeID string // written by the reader, read after wg.Wait
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			t.Log(line)
			if m := storeIDLine.FindStringSubmatch(line); m != nil {
				storeID = m[1]
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	start := time.Now()
	runErr := cmd.Run()
	w.Close()
	wg.Wait()

	if storeID != "" {
		// The script deletes its store; should it have stopped before, the namespace goes here.
		sandboxtest.CleanupNamespace(t, "store-"+storeID)
	}
	if ctx.Err() != nil {
		t.Fatalf("the browser script did not finish within 10 minutes")
	}
	if runErr != nil {
		t.Fatalf("the browser script failed after %s (%v): see its output above and the screenshots in %s", time.Since(start).Round(time.Second), runErr, artifacts)
	}
	t.Logf("browser script passed in %s", time.Since(start).Round(time.Second))

	png := []byte("\x89PNG\r\n\x1a\n")
	for _, name := range browserScreenshots {
		b, err := os.ReadFile(filepath.Join(artifacts, name))
		if err != nil || !bytes.HasPrefix(b, png) || len(b) < 5000 {
			t.Errorf("screenshot %s: %d bytes, %v; want a PNG of the screen", name, len(b), err)
		}
	}
}
