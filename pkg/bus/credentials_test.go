package bus_test

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
)

func TestCredentialFlags(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withNewline, empty := file("password", "from-file\n"), file("empty", "")
	for _, tt := range []struct {
		name    string
		args    []string
		env     string
		want    bus.Credentials
		wantErr string
	}{
		{name: "no password: no authentication", want: bus.Credentials{User: "audit"}},
		{name: "password from the environment", env: "from-env", want: bus.Credentials{User: "audit", Password: "from-env"}},
		{name: "a password file wins over the environment", env: "from-env", args: []string{"--nats-user", "audit-2", "--nats-password-file", withNewline},
			want: bus.Credentials{User: "audit-2", Password: "from-file"}},
		{name: "an empty password file is a mistake", args: []string{"--nats-password-file", empty}, wantErr: "is empty: write the NATS password in it"},
		{name: "a missing password file", args: []string{"--nats-password-file", filepath.Join(dir, "nope")}, wantErr: "cannot read the NATS password"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(bus.PasswordEnv, tt.env)
			var got bus.Credentials
			fs := flag.NewFlagSet("audit", flag.ContinueOnError)
			fs.SetOutput(&bytes.Buffer{})
			got.BindFlags(fs, bus.RoleAudit)
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("credentials = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCredentialsNeverPrintThePassword(t *testing.T) {
	c := bus.Credentials{User: "api", Password: "s3cret-value"}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("connecting", "credentials", c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), logged.String()} {
		if strings.Contains(out, c.Password) {
			t.Errorf("%q shows the password", out)
		}
		if !strings.Contains(out, "api") {
			t.Errorf("%q does not name the user", out)
		}
	}
}

// syncBuffer is a log that a connection's callbacks write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRefusedCredentialsAreLoggedWithWhatToCheck(t *testing.T) {
	env := bustest.Embedded(t)
	logs := &syncBuffer{}
	wrong := bus.Credentials{User: "api", Password: "wrong-password"}
	opts := append(env.Topology.ConnectOptions(bus.RoleAPI, wrong, slog.New(slog.NewTextHandler(logs, nil))),
		nats.RetryOnFailedConnect(true), nats.ReconnectWait(50*time.Millisecond))
	nc, err := nats.Connect(env.URL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "check --nats-user and the password in --nats-password-file or $STOREPROV_NATS_PASSWORD") {
		if time.Now().After(deadline) {
			t.Fatalf("log = %q, want the refusal and what to check", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(logs.String(), wrong.Password) {
		t.Errorf("log %q shows the password", logs.String())
	}
}
