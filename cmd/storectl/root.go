package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// newRootCommand returns storectl with every command; they print to out.
func newRootCommand(out io.Writer) *cobra.Command {
	o := &options{out: out}
	root := &cobra.Command{
		Use:           "storectl",
		Short:         "Manage storeprov stores over gRPC",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	o.BindFlags(root.PersistentFlags())
	root.AddCommand(
		newCreateCommand(o), newListCommand(o), newGetCommand(o), newDeleteCommand(o), newRetryCommand(o),
		newUpgradeCommand(o), newWatchCommand(o), newAuditCommand(o), newTokenCommand(o), newUserCommand(o),
		newWhoamiCommand(o),
	)
	return root
}

// options are the global flags, and the output every command prints to.
type options struct {
	apiAddr, auditAddr, token, output string
	out                               io.Writer
}

// BindFlags binds the global flags to o; their defaults come from the
// environment.
func (o *options) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.apiAddr, "api", envOr("STOREPROV_API", "localhost:9090"), "gRPC address of the api service ($STOREPROV_API)")
	fs.StringVar(&o.auditAddr, "audit", envOr("STOREPROV_AUDIT", "localhost:9092"), "gRPC address of the audit service ($STOREPROV_AUDIT)")
	fs.StringVar(&o.token, "token", "", "API token (default $STOREPROV_TOKEN, then .cache/dev/token)")
	fs.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
}

// withStores calls f with a client of the api's store service.
func (o *options) withStores(f func(context.Context, storev1.StoreServiceClient) error) error {
	return o.with(o.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
		return f(ctx, storev1.NewStoreServiceClient(conn))
	})
}

// withUsers calls f with a client of the api's user service.
func (o *options) withUsers(f func(context.Context, storev1.UserServiceClient) error) error {
	return o.with(o.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
		return f(ctx, storev1.NewUserServiceClient(conn))
	})
}

// with dials addr and calls f with a context carrying the token.
func (o *options) with(addr string, f func(context.Context, *grpc.ClientConn) error) error {
	if o.output != "table" && o.output != "json" {
		return fmt.Errorf("unknown output format %q: use table or json", o.output)
	}
	token, err := o.resolveToken()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("cannot connect to %s: %w", addr, err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	return f(ctx, conn)
}

func (o *options) resolveToken() (string, error) {
	if o.token != "" {
		return o.token, nil
	}
	if t := os.Getenv("STOREPROV_TOKEN"); t != "" {
		return t, nil
	}
	if b, err := os.ReadFile(".cache/dev/token"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	return "", errors.New("no API token: pass --token, set STOREPROV_TOKEN, or run make dev, which writes .cache/dev/token")
}

// printList prints items as JSON lines with -o json, else as a table
// under header (tab-separated titles), one row of cells per item.
func printList[T proto.Message](o *options, items []T, header string, row func(T) []string) error {
	if o.output == "json" {
		for _, it := range items {
			if err := o.printJSON(it); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, it := range items {
		fmt.Fprintln(w, strings.Join(row(it), "\t"))
	}
	return w.Flush()
}

func (o *options) printJSON(m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(o.out, string(b))
	return err
}

// describe turns a gRPC error into its message and code.
func describe(err error) error {
	s := status.Convert(err)
	return fmt.Errorf("%s (%s)", s.Message(), s.Code())
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
