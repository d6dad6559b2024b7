package bus

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// PasswordEnv names the environment variable a service reads its NATS
// password from when --nats-password-file is not given.
const PasswordEnv = "STOREPROV_NATS_PASSWORD"

// Credentials are the user and password a service signs in to NATS with.
// An empty Password connects without authentication, to a server that has
// none. They print and log without the password.
type Credentials struct {
	User     string
	Password string
}

// String names the user and hides the password.
func (c Credentials) String() string {
	if c.Password == "" {
		return "no authentication"
	}
	return "user " + c.User + " with a password"
}

// GoString hides the password from %#v too.
func (c Credentials) GoString() string { return "bus.Credentials{" + c.String() + "}" }

// LogValue hides the password from slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// BindFlags registers --nats-user (default: the role's name) and
// --nats-password-file on fs, and takes the password from $PasswordEnv
// meanwhile; a password file given on the command line replaces it, read
// while the flags are parsed. The password itself is never a flag, so it
// never shows in a process list.
func (c *Credentials) BindFlags(fs *flag.FlagSet, role Role) {
	c.Password = os.Getenv(PasswordEnv)
	fs.StringVar(&c.User, "nats-user", string(role), "NATS user to sign in as")
	fs.Func("nats-password-file", "file holding the NATS user's password (default: $"+PasswordEnv+"; neither: no authentication)", func(path string) error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("cannot read the NATS password: %w", err)
		}
		password := strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return fmt.Errorf("%s is empty: write the NATS password in it, or leave the flag out to connect without authentication", path)
		}
		c.Password = password
		return nil
	})
}

// ConnectOptions are the options every service connects to NATS with as
// role: its credentials (when they have a password) and its own inbox,
// the only one its permissions let it read. Refused credentials and
// refused subjects are logged to log with what to check, since the
// connection retries on its own and reports neither to the caller.
func (t Topology) ConnectOptions(role Role, c Credentials, log *slog.Logger) []nats.Option {
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.CustomInboxPrefix(t.InboxPrefix(role)),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			if errors.Is(err, nats.ErrAuthorization) {
				log.Error("NATS refused the credentials: check --nats-user and the password in --nats-password-file or $"+PasswordEnv,
					"credentials", c, "err", err)
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"role", role, "err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			if errors.Is(err, nats.ErrPermissionViolation) {
				log.Error("NATS refused a subject: the server must give this role bus.Topology.Permissions", attrs...)
				return
			}
			log.Warn("NATS reported an error", attrs...)
		}),
	}
	if c.Password != "" {
		user := c.User
		if user == "" {
			user = string(role)
		}
		opts = append(opts, nats.UserInfo(user, c.Password), nats.IgnoreAuthErrorAbort())
	}
	return opts
}
