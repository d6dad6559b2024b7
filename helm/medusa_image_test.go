package charts_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/lib/pq"
)

// Settings of TestMedusaImageSellsAnOrder, from the environment.
const (
	// MedusaTestEnv runs the test when set to 1 (`make test-medusa`); a
	// plain `go test ./...` skips it, since it needs minutes and the npm
	// registry. Once asked for, it fails, never skips, when Node, npm,
	// PostgreSQL or Redis is missing.
	MedusaTestEnv = "STOREPROV_TEST_MEDUSA"
	// MedusaPostgresEnv is a PostgreSQL URL whose user may create
	// databases; each run creates and drops its own database.
	MedusaPostgresEnv = "STOREPROV_TEST_MEDUSA_POSTGRES_URL"
	// MedusaRedisEnv is a Redis URL whose database number the test owns:
	// it is flushed at the start of each run.
	MedusaRedisEnv = "STOREPROV_TEST_MEDUSA_REDIS_URL"
	// MedusaCacheEnv is the directory of the npm install and the build,
	// kept between runs (default: .cache/medusa at the repository root).
	MedusaCacheEnv = "STOREPROV_TEST_MEDUSA_CACHE"
	// MedusaKeepEnv keeps the run's database when set to 1.
	MedusaKeepEnv = "STOREPROV_TEST_MEDUSA_KEEP"
)

const (
	defaultMedusaPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultMedusaRedis    = "redis://127.0.0.1:6379/11"
	// The admin user the test creates, as the store-admin Secret would hold.
	medusaAdminEmail    = "admin@store.test"
	medusaAdminPassword = "k7QW2MZXJ4P5RT6N"
)

// The image's sources, as the Dockerfile copies them.
var medusaSources = []string{"package.json", "package-lock.json", ".npmrc", "tsconfig.json", "medusa-config.ts", "src"}

// TestMedusaImageSellsAnOrder builds helm/medusa-image on this machine's
// Node as its Dockerfile does (npm ci, medusa build), runs the commands of
// the medusa-store chart's Jobs against a new PostgreSQL database and Redis
// (migrations, admin user, seed), runs the seed again and checks that it
// changed nothing, starts the server as the image's CMD does, and runs the
// image's order check against it: an order placed through the Store API
// and cancelled through the admin API.
//
// The npm install is cached under the cache directory by the hash of
// package-lock.json, and the build by the hash of the image's sources, so
// a second run only migrates, seeds, serves and orders.
func TestMedusaImageSellsAnOrder(t *testing.T) {
	if os.Getenv(MedusaTestEnv) != "1" {
		t.Skipf("set %s=1 (make test-medusa) to build the Medusa image's project and place an order on it", MedusaTestEnv)
	}
	start := time.Now()
	for _, tool := range []string{"node", "npm", "npx"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on PATH: the Medusa test needs Node.js ^20.19 or >=22.12 with npm", tool)
		}
	}
	checkNodeVersion(t)

	pgURL := envOr(MedusaPostgresEnv, defaultMedusaPostgres)
	redisURL := envOr(MedusaRedisEnv, defaultMedusaRedis)
	flushRedis(t, redisURL)
	dbURL := createDatabase(t, pgURL)

	cache := os.Getenv(MedusaCacheEnv)
	if cache == "" {
		root, err := filepath.Abs("..")
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(root, ".cache", "medusa")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	lockCache(t, cache)

	project := prepareProject(t, cache)
	server := filepath.Join(project, ".medusa", "server")

	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	// The environment the chart gives every Medusa process (medusaEnv),
	// and the setup Job's settings (setupEnv), for this machine.
	env := append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"REDIS_URL="+redisURL,
		"JWT_SECRET=jwt:medusa-test",
		"COOKIE_SECRET=cookie:medusa-test",
		"NODE_ENV=production",
		"PORT="+strconv.Itoa(port),
		"MEDUSA_WORKER_MODE=shared",
		"MEDUSA_BACKEND_URL="+base,
		"STORE_CORS="+base,
		"ADMIN_CORS="+base,
		"AUTH_CORS="+base,
		"MEDUSA_COOKIE_SECURE=false",
		"MEDUSA_DISABLE_TELEMETRY=true",
		"NPM_CONFIG_UPDATE_NOTIFIER=false",
		"ADMIN_EMAIL="+medusaAdminEmail,
		"ADMIN_PASSWORD="+medusaAdminPassword,
		"STORE_TITLE=Test $(ADMIN_PASSWORD) shop",
		"STORE_CURRENCY=eur",
		"STORE_COUNTRIES=de,fr",
		"PUBLISHABLE_KEY_TITLE=storeprov",
		"PRODUCT_NAME=Blue mug",
		"PRODUCT_SKU=blue-mug",
		"PRODUCT_PRICE=12.50",
		"PRODUCT_DESCRIPTION=A mug.",
	)

	// The migrations Job, then the setup Job's admin-user and seed steps.
	run(t, server, env, 10*time.Minute, "npx", "medusa", "db:migrate", "--execute-safe-links")
	run(t, server, env, 5*time.Minute, "npx", "medusa", "user", "-e", medusaAdminEmail, "-p", medusaAdminPassword)
	run(t, server, env, 5*time.Minute, "npx", "medusa", "exec", "./src/scripts/seed-store.js")

	db, err := sql.Open("postgres", dbURL+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seeded := countSeeded(t, db)
	for table, n := range seeded {
		if n == 0 {
			t.Errorf("the seed created no %s", table)
		}
	}
	var name, setup string
	if err := db.QueryRow(`SELECT name, coalesce(metadata->>'storeprov_setup', '') FROM store WHERE deleted_at IS NULL`).Scan(&name, &setup); err != nil {
		t.Fatal(err)
	}
	if name != "Test $(ADMIN_PASSWORD) shop" || setup != "done" {
		t.Errorf("store name %q, storeprov_setup %q; want the title and done", name, setup)
	}

	// A second run (an upgrade, a retry) changes nothing.
	run(t, server, env, 5*time.Minute, "npx", "medusa", "exec", "./src/scripts/seed-store.js")
	if again := countSeeded(t, db); !maps.Equal(again, seeded) {
		t.Errorf("the second seed changed the store: %v, then %v", seeded, again)
	}
	if t.Failed() {
		t.FailNow()
	}

	stop := startServer(t, server, env, base)
	out := run(t, server, append(env, "MEDUSA_URL="+base, "ORDER_CHECK_WAIT_SECONDS=60"), 5*time.Minute, "node", "src/scripts/order-check.js")
	stop()
	orderID := strings.TrimSpace(out)
	if !regexp.MustCompile(`^order_[0-9A-Z]+$`).MatchString(orderID) {
		t.Fatalf("the order check printed %q, want an order id", out)
	}
	var status string
	if err := db.QueryRow(`SELECT status FROM "order" WHERE id = $1`, orderID).Scan(&status); err != nil {
		t.Fatalf("order %s: %v", orderID, err)
	}
	if status != "canceled" {
		t.Errorf("order %s is %s, want canceled", orderID, status)
	}
	t.Logf("order check passed: order %s placed and cancelled; the test took %s", orderID, time.Since(start).Round(time.Second))
	fmt.Printf("medusa order check: %s\n", orderID)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// checkNodeVersion fails unless node is one Medusa supports.
func checkNodeVersion(t *testing.T) {
	t.Helper()
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	parts := strings.SplitN(v, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	if !(major == 20 && minor >= 19 || major == 22 && minor >= 12 || major > 22) {
		t.Fatalf("node %s: Medusa 2.21 needs ^20.19.0 or >=22.12.0", v)
	}
}

// flushRedis empties the Redis database of rawURL, so that no queued job
// of an earlier run reaches this run's server.
func flushRedis(t *testing.T, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "redis" {
		t.Fatalf("%s=%q is not a redis:// URL", MedusaRedisEnv, rawURL)
	}
	dbNum := strings.TrimPrefix(u.Path, "/")
	if dbNum == "" {
		dbNum = "0"
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("Redis at %s (%s): %v", u.Host, MedusaRedisEnv, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	send := func(args ...string) {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := io.WriteString(conn, b.String()); err != nil {
			t.Fatalf("Redis at %s: %v", u.Host, err)
		}
		line, err := r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+") {
			t.Fatalf("Redis at %s: %s: %q %v", u.Host, args[0], line, err)
		}
	}
	if p, ok := u.User.Password(); ok {
		send("AUTH", p)
	}
	send("SELECT", dbNum)
	send("FLUSHDB")
}

// createDatabase creates a new database for this run and returns its URL;
// it is dropped at the end unless MedusaKeepEnv is 1.
func createDatabase(t *testing.T, adminURL string) string {
	t.Helper()
	admin, err := sql.Open("postgres", adminURL)
	if err != nil {
		t.Fatalf("%s: %v", MedusaPostgresEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("PostgreSQL at %s (%s): %v", redactURL(adminURL), MedusaPostgresEnv, err)
	}
	name := fmt.Sprintf("medusa_test_%d_%d", time.Now().Unix(), os.Getpid())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if os.Getenv(MedusaKeepEnv) == "1" {
			t.Logf("kept database %s", name)
			return
		}
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	u.RawQuery = ""
	t.Logf("database %s", name)
	return u.String()
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// lockCache keeps two runs from sharing the cache directory at once.
func lockCache(t *testing.T, cache string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("waiting for another run to release %s", cache)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { f.Close() })
}

// prepareProject returns the project directory of the image's sources
// under cache, installed (npm ci, once per package-lock.json) and built
// (medusa build, once per content of the sources), with the built server's
// node_modules pointing at the project's.
func prepareProject(t *testing.T, cache string) string {
	t.Helper()
	src := "medusa-image"
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatalf("helm/medusa-image has no package-lock.json: %v", err)
	}
	lockSum := sha256.Sum256(lock)
	project := filepath.Join(cache, "project-"+hex.EncodeToString(lockSum[:8]))
	installed := filepath.Join(project, ".storeprov-installed")
	if _, err := os.Stat(installed); err != nil {
		t.Logf("npm ci in %s (cached for this package-lock.json)", project)
		if err := os.RemoveAll(project); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(project, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"package.json", "package-lock.json", ".npmrc"} {
			copyPath(t, filepath.Join(src, f), filepath.Join(project, f))
		}
		run(t, project, append(os.Environ(), "NPM_CONFIG_UPDATE_NOTIFIER=false"), 20*time.Minute, "npm", "ci", "--no-audit", "--no-fund")
		if err := os.WriteFile(installed, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("npm install cached in %s", project)
	}

	sum := sourcesHash(t, src)
	built := filepath.Join(project, ".medusa", "server", ".storeprov-built")
	if b, err := os.ReadFile(built); err == nil && string(b) == sum {
		t.Logf("build cached for these sources (%s)", sum[:16])
	} else {
		for _, f := range medusaSources {
			_ = os.RemoveAll(filepath.Join(project, f))
			copyPath(t, filepath.Join(src, f), filepath.Join(project, f))
		}
		run(t, project, append(os.Environ(), "MEDUSA_DISABLE_TELEMETRY=true"), 15*time.Minute, "npx", "medusa", "build")
		// The image installs the production dependencies into the built
		// server (npm ci --omit=dev); here it uses the project's.
		if err := os.Symlink(filepath.Join("..", "..", "node_modules"), filepath.Join(project, ".medusa", "server", "node_modules")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(built, []byte(sum), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return project
}

// sourcesHash is the hash of the image's sources, names and contents.
func sourcesHash(t *testing.T, src string) string {
	t.Helper()
	h := sha256.New()
	for _, top := range medusaSources {
		err := filepath.WalkDir(filepath.Join(src, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(p), len(b))
			h.Write(b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func copyPath(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// run runs a command in dir and fails the test unless it exits 0; it
// returns the standard output. Both streams are kept in the test's log.
func run(t *testing.T, dir string, env []string, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	line := strings.Join(append([]string{name}, args...), " ")
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began).Round(100 * time.Millisecond)
	if err != nil {
		t.Fatalf("%s (in %s) failed after %s: %v\nstdout:\n%s\nstderr:\n%s", line, dir, took, err, tail(stdout.String()), tail(stderr.String()))
	}
	t.Logf("%s: %s", line, took)
	return stdout.String()
}

func tail(s string) string {
	const max = 8000
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer starts `npx medusa start` in dir as the image's CMD does and
// waits for /health; the returned function stops it (also at cleanup).
func startServer(t *testing.T, dir string, env []string, base string) (stop func()) {
	t.Helper()
	logPath := filepath.Join(dir, "..", "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npx", "medusa", "start")
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited: //nolint:errcheck // the exit after SIGTERM: its error says terminated
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited //nolint:errcheck // the exit after SIGKILL: its error says killed
		}
		logFile.Close()
		t.Logf("server stopped (log: %s)", logPath)
	}
	t.Cleanup(stop)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err
			b, _ := os.ReadFile(logPath)
			t.Fatalf("medusa start exited: %v\n%s", err, tail(string(b)))
		default:
		}
		res, err := client.Get(base + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("the server did not answer %s/health within 4 minutes\n%s", base, tail(string(b)))
		}
		time.Sleep(time.Second)
	}
	t.Logf("npx medusa start: serving %s after %s", base, time.Since(began).Round(100*time.Millisecond))
	return stop
}

// seededTables are what the seed creates; countSeeded counts their live
// rows.
var seededTables = []string{
	"region", "region_country", "tax_region", "sales_channel", "api_key", "stock_location",
	"fulfillment_set", "service_zone", "geo_zone", "shipping_profile", "shipping_option",
	"product", "product_variant", "price", "inventory_item", "inventory_level",
}

func countSeeded(t *testing.T, db *sql.DB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range seededTables {
		var n int
		q := fmt.Sprintf("SELECT count(*) FROM %q WHERE deleted_at IS NULL", table)
		if table == "region_country" {
			// Medusa lists every country; count those in a region.
			q += " AND region_id IS NOT NULL"
		}
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", table, err)
		}
		out[table] = n
	}
	return out
}
