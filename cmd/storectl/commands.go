package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

// client holds the global flags and the connections they lead to.
type client struct {
	apiAddr, auditAddr, token, output string
	out                               io.Writer
}

func newRootCommand(out io.Writer) *cobra.Command {
	c := &client{out: out}
	root := &cobra.Command{
		Use:           "storectl",
		Short:         "Manage storeprov stores over gRPC",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&c.apiAddr, "api", envOr("STOREPROV_API", "localhost:9090"), "gRPC address of the api service ($STOREPROV_API)")
	pf.StringVar(&c.auditAddr, "audit", envOr("STOREPROV_AUDIT", "localhost:9092"), "gRPC address of the audit service ($STOREPROV_AUDIT)")
	pf.StringVar(&c.token, "token", "", "API token (default $STOREPROV_TOKEN, then .cache/dev/token)")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table or json")

	var name, engine string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := parseEngine(engine)
			if err != nil {
				return err
			}
			return c.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				st, err := s.CreateStore(ctx, &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: name, Engine: e}})
				return c.printStores(err, st)
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "display name of the store")
	create.Flags().StringVar(&engine, "engine", "woocommerce", "woocommerce or medusa")

	var phase string
	list := &cobra.Command{
		Use:   "list",
		Short: "List stores",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := storev1.Phase_PHASE_UNSPECIFIED
			if phase != "" {
				v, ok := storev1.Phase_value["PHASE_"+strings.ToUpper(phase)]
				if !ok {
					return fmt.Errorf("unknown phase %q: use provisioning, ready, failed, deleting or deleted", phase)
				}
				p = storev1.Phase(v)
			}
			return c.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				var all []*storev1.Store
				token := ""
				for {
					page, err := s.ListStores(ctx, &storev1.ListStoresRequest{PageSize: 500, PageToken: token, Phase: p})
					if err != nil {
						return c.printStores(err)
					}
					all = append(all, page.GetStores()...)
					if token = page.GetNextPageToken(); token == "" {
						return c.printStores(nil, all...)
					}
				}
			})
		},
	}
	list.Flags().StringVar(&phase, "phase", "", "only stores in this phase")

	byID := func(use, short string, call func(context.Context, storev1.StoreServiceClient, string) (*storev1.Store, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return c.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
					st, err := call(ctx, s, args[0])
					return c.printStores(err, st)
				})
			},
		}
	}
	get := byID("get", "Show a store", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.GetStore(ctx, &storev1.GetStoreRequest{Id: id})
	})
	del := byID("delete", "Delete a store and everything it owns", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: id})
	})
	retry := byID("retry", "Provision a FAILED store again", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.RetryStore(ctx, &storev1.RetryStoreRequest{Id: id})
	})

	var chartVersion string
	var sets []string
	upgrade := &cobra.Command{
		Use:   "upgrade ID",
		Short: "Move a READY store to another chart version or other values",
		Long: `Move a READY store to another chart version (default: the newest) or other
Helm values, given as --set key=value by dotted path (repeatable), such as
--set wordpress.replicas=2 --set wordpress.resources.limits.memory=1Gi. Only
the values the chart declares in its tenant-values.schema.json may be set; a
refusal lists them. Images change with the chart version, never with values.
The values replace the store's previous ones. If the upgraded store cannot
become ready, it is rolled back and stays READY, with reason UpgradeRolledBack.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			values, err := parseSets(sets)
			if err != nil {
				return err
			}
			return c.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				st, err := s.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: args[0], ChartVersion: chartVersion, Values: values})
				return c.printStores(err, st)
			})
		},
	}
	upgrade.Flags().StringVar(&chartVersion, "chart-version", "", "chart version to move to (default: the chart built into the platform, or the one the store runs if newer)")
	upgrade.Flags().StringArrayVar(&sets, "set", nil, "Helm value override key=value, by dotted path; repeat for several")

	watch := &cobra.Command{
		Use:   "watch",
		Short: "Print stores, then every change, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				stream, err := s.WatchStores(ctx, &storev1.WatchStoresRequest{})
				if err != nil {
					return describe(err)
				}
				for {
					ev, err := stream.Recv()
					if err != nil {
						if errors.Is(err, io.EOF) || errors.Is(ctx.Err(), context.Canceled) {
							return nil
						}
						return describe(err)
					}
					if err := c.printStores(nil, ev.GetStore()); err != nil {
						return err
					}
				}
			})
		},
	}

	var auditStore, auditActor, auditAction string
	var since time.Duration
	audit := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.with(c.auditAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				req := &auditv1.ListAuditEntriesRequest{StoreId: auditStore, Actor: auditActor, Action: auditAction, PageSize: 1000}
				if since > 0 {
					req.StartTime = timestamppb.New(time.Now().Add(-since))
				}
				var all []*auditv1.AuditEntry
				for {
					resp, err := auditv1.NewAuditServiceClient(conn).ListAuditEntries(ctx, req)
					if err != nil {
						return describe(err)
					}
					all = append(all, resp.GetEntries()...)
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						break
					}
				}
				return c.printAudit(all)
			})
		},
	}
	audit.Flags().StringVar(&auditStore, "store", "", "only entries about this store")
	audit.Flags().StringVar(&auditActor, "actor", "", "only entries by this user")
	audit.Flags().StringVar(&auditAction, "action", "", "only this action: create, delete, retry, upgrade, ready, failure, deleted")
	audit.Flags().DurationVar(&since, "since", 0, "only entries newer than this, such as 1h")

	var knownHash string
	auditVerify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain (admins); exit status 1 when it is broken",
		Long: `Walks the audit log's hash chain from the first kept entry to the newest and
reports the first entry whose content or link does not match, or that the
chain is intact. Keep the head hash it prints somewhere the audit database's
administrators cannot write, and pass it back with --known-hash: a rewrite
of the whole table with every hash recomputed is then detected too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.with(c.auditAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := auditv1.NewAuditServiceClient(conn).VerifyAuditEntries(ctx, &auditv1.VerifyAuditEntriesRequest{KnownHash: knownHash})
				if err != nil {
					return describe(err)
				}
				if err := c.printVerify(resp); err != nil {
					return err
				}
				if !resp.GetIntact() {
					return fmt.Errorf("the audit log's hash chain is broken at entry %d", resp.GetFirstBreak().GetSequence())
				}
				return nil
			})
		},
	}
	auditVerify.Flags().StringVar(&knownHash, "known-hash", "", "head hash of an earlier verification, kept outside the audit database; the chain must still contain it")
	audit.AddCommand(auditVerify)

	token := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	var tokUser, tokDesc string
	var tokAdmin bool
	var tokQuota int32
	var tokTTL time.Duration
	tokenCreate := &cobra.Command{
		Use:   "create",
		Short: "Issue an API token (admins: for any user, creating it if needed)",
		Long: `Issue an API token. It expires after --ttl, at most the api's --token-max-ttl
(90 days by default), which is also the default. Admins may issue tokens for
any user: a user that does not exist is created with --admin and
--store-quota; for a user that exists, change those with 'storectl user set'.
The output says whose account the token is for, and whether that account
signs in with OpenID Connect.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &storev1.CreateTokenRequest{User: tokUser, Admin: tokAdmin, StoreQuota: tokQuota, Description: tokDesc}
			if tokTTL != 0 {
				req.Ttl = durationpb.New(tokTTL)
			}
			return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := storev1.NewUserServiceClient(conn).CreateToken(ctx, req)
				if err != nil {
					return describe(err)
				}
				if c.output == "json" {
					return c.printJSON(resp)
				}
				u := resp.GetUser()
				account := "an existing account"
				if resp.GetUserCreated() {
					account = "a new account"
				}
				if u.GetSignIn() {
					account = "an existing account that signs in with " + u.GetOidcIssuer()
				}
				fmt.Fprintf(c.out, "token %s for %s, %s (admin: %t, store quota: %d), expires %s\n",
					resp.GetInfo().GetId(), u.GetName(), account, u.GetAdmin(), u.GetStoreQuota(),
					resp.GetInfo().GetExpireTime().AsTime().Local().Format(time.DateTime))
				fmt.Fprintf(c.out, "it is shown only once:\n%s\n", resp.GetToken())
				return nil
			})
		},
	}
	tokenCreate.Flags().StringVar(&tokUser, "user", "", "user the token is for (default: yourself)")
	tokenCreate.Flags().BoolVar(&tokAdmin, "admin", false, "make a new user an admin")
	tokenCreate.Flags().Int32Var(&tokQuota, "store-quota", 0, "store quota of a new user (0: the default)")
	tokenCreate.Flags().StringVar(&tokDesc, "description", "", "what the token is for")
	tokenCreate.Flags().DurationVar(&tokTTL, "ttl", 0, "how long the token lasts, such as 720h (default: the api's --token-max-ttl)")

	var listUser string
	tokenList := &cobra.Command{
		Use:   "list",
		Short: "List your tokens that have not expired (admins: --user's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := storev1.NewUserServiceClient(conn).ListTokens(ctx, &storev1.ListTokensRequest{User: listUser})
				if err != nil {
					return describe(err)
				}
				return c.printTokens(resp.GetTokens())
			})
		},
	}
	tokenList.Flags().StringVar(&listUser, "user", "", "whose tokens (default: yours; another user's for admins)")

	tokenRevoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once, by the id 'token list' shows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				t, err := storev1.NewUserServiceClient(conn).DeleteToken(ctx, &storev1.DeleteTokenRequest{Id: args[0]})
				if err != nil {
					return describe(err)
				}
				if c.output == "json" {
					return c.printJSON(t)
				}
				fmt.Fprintf(c.out, "revoked token %s of %s (%s)\n", t.GetId(), t.GetUser(), t.GetDescription())
				return nil
			})
		},
	}
	token.AddCommand(tokenCreate, tokenList, tokenRevoke)

	user := &cobra.Command{Use: "user", Short: "Manage users (admins)"}
	var setAdmin bool
	var setQuota int32
	userSet := &cobra.Command{
		Use:   "set NAME",
		Short: "Change a user's admin flag (--admin=false demotes) or store quota",
		Long: `Change a user's admin flag or store quota. Admin is read from the user on
every call, so --admin=false holds for all of the user's tokens at once. A user
who signs in is made admin again on the next sign-in if the api's
--oidc-admin-emails lists the user's email.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &storev1.UpdateUserRequest{Name: args[0]}
			if cmd.Flags().Changed("admin") {
				req.Admin = &setAdmin
			}
			if cmd.Flags().Changed("store-quota") {
				req.StoreQuota = &setQuota
			}
			if req.Admin == nil && req.StoreQuota == nil {
				return errors.New("nothing to change: give --admin=true|false or --store-quota N")
			}
			return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				u, err := storev1.NewUserServiceClient(conn).UpdateUser(ctx, req)
				if err != nil {
					return describe(err)
				}
				if c.output == "json" {
					return c.printJSON(u)
				}
				fmt.Fprintf(c.out, "%s (admin: %t, store quota: %d)\n", u.GetName(), u.GetAdmin(), u.GetStoreQuota())
				return nil
			})
		},
	}
	userSet.Flags().BoolVar(&setAdmin, "admin", false, "make the user an admin (true) or not (false)")
	userSet.Flags().Int32Var(&setQuota, "store-quota", 0, "stores the user may have")
	user.AddCommand(userSet)

	whoami := &cobra.Command{
		Use:   "whoami",
		Short: "Show the user of the token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				u, err := storev1.NewUserServiceClient(conn).GetCurrentUser(ctx, &storev1.GetCurrentUserRequest{})
				if err != nil {
					return describe(err)
				}
				if c.output == "json" {
					return c.printJSON(u)
				}
				fmt.Fprintf(c.out, "%s (admin: %t, store quota: %d)\n", u.GetName(), u.GetAdmin(), u.GetStoreQuota())
				return nil
			})
		},
	}

	root.AddCommand(create, list, get, del, retry, upgrade, watch, audit, token, user, whoami)
	return root
}

func (c *client) withStores(f func(context.Context, storev1.StoreServiceClient) error) error {
	return c.with(c.apiAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
		return f(ctx, storev1.NewStoreServiceClient(conn))
	})
}

// with dials addr and calls f with a context carrying the token.
func (c *client) with(addr string, f func(context.Context, *grpc.ClientConn) error) error {
	if c.output != "table" && c.output != "json" {
		return fmt.Errorf("unknown output format %q: use table or json", c.output)
	}
	token, err := c.resolveToken()
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

func (c *client) resolveToken() (string, error) {
	if c.token != "" {
		return c.token, nil
	}
	if t := os.Getenv("STOREPROV_TOKEN"); t != "" {
		return t, nil
	}
	if b, err := os.ReadFile(".cache/dev/token"); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	return "", errors.New("no API token: pass --token, set STOREPROV_TOKEN, or run make dev, which writes .cache/dev/token")
}

func (c *client) printStores(err error, stores ...*storev1.Store) error {
	if err != nil {
		return describe(err)
	}
	if c.output == "json" {
		for _, st := range stores {
			if err := c.printJSON(st); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tNAME\tENGINE\tPHASE\tCHART\tOWNER\tURL\tAGE\tREASON")
	for _, st := range stores {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.GetId(), st.GetDisplayName(),
			strings.ToLower(strings.TrimPrefix(st.GetEngine().String(), "ENGINE_")),
			strings.TrimPrefix(st.GetPhase().String(), "PHASE_"), st.GetChartVersion(), st.GetOwner(), st.GetUrl(),
			time.Since(st.GetCreateTime().AsTime()).Round(time.Second), st.GetFailureReason())
	}
	return w.Flush()
}

func (c *client) printTokens(tokens []*storev1.Token) error {
	if c.output == "json" {
		for _, t := range tokens {
			if err := c.printJSON(t); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tUSER\tKIND\tDESCRIPTION\tCREATED\tEXPIRES\tLAST USED")
	for _, t := range tokens {
		lastUsed := "never"
		if t.GetLastUseTime() != nil {
			lastUsed = t.GetLastUseTime().AsTime().Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.GetId(), t.GetUser(),
			strings.ToLower(strings.TrimPrefix(t.GetKind().String(), "TOKEN_KIND_")), t.GetDescription(),
			t.GetCreateTime().AsTime().Local().Format(time.DateTime), t.GetExpireTime().AsTime().Local().Format(time.DateTime), lastUsed)
	}
	return w.Flush()
}

func (c *client) printAudit(entries []*auditv1.AuditEntry) error {
	if c.output == "json" {
		for _, e := range entries {
			if err := c.printJSON(e); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tACTION\tACTOR\tSTORE\tDETAIL")
	for _, e := range entries {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().Local().Format(time.DateTime), e.GetAction(), e.GetActor(), e.GetStoreId(), e.GetDetail())
	}
	return w.Flush()
}

func (c *client) printVerify(resp *auditv1.VerifyAuditEntriesResponse) error {
	if c.output == "json" {
		return c.printJSON(resp)
	}
	start := "the first entry ever"
	if resp.GetCheckpointSequence() > 0 {
		start = fmt.Sprintf("checkpoint %d (hash %s; older entries were deleted by retention)", resp.GetCheckpointSequence(), resp.GetCheckpointHash())
	}
	if resp.GetIntact() {
		fmt.Fprintf(c.out, "intact: %d entries checked, from %s to entry %d\nhead hash: %s\n",
			resp.GetCheckedEntries(), start, resp.GetHeadSequence(), resp.GetHeadHash())
		return nil
	}
	b := resp.GetFirstBreak()
	fmt.Fprintf(c.out, "BROKEN (%s) at entry %d, after %d intact entries from %s:\n  %s\n",
		strings.ToLower(strings.TrimPrefix(b.GetKind().String(), "KIND_")), b.GetSequence(), resp.GetCheckedEntries(), start, b.GetMessage())
	if e := b.GetEntry(); e != nil {
		fmt.Fprintf(c.out, "  as stored now: event %s, %s %s by %s on store %s: %q\n",
			e.GetId(), e.GetTime().AsTime().UTC().Format(time.RFC3339), e.GetAction(), e.GetActor(), e.GetStoreId(), e.GetDetail())
	}
	return nil
}

func (c *client) printJSON(m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.out, string(b))
	return err
}

// describe turns a gRPC error into its message and code.
func describe(err error) error {
	s := status.Convert(err)
	return fmt.Errorf("%s (%s)", s.Message(), s.Code())
}

func parseEngine(s string) (storev1.Engine, error) {
	switch strings.ToLower(s) {
	case "woocommerce", "wordpress", "woo":
		return storev1.Engine_ENGINE_WOOCOMMERCE, nil
	case "medusa":
		return storev1.Engine_ENGINE_MEDUSA, nil
	}
	return 0, fmt.Errorf("unknown engine %q: use woocommerce or medusa", s)
}

// parseSets turns --set key=value flags into a map; the value may hold '='.
func parseSets(sets []string) (map[string]string, error) {
	values := map[string]string{}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--set %q is not key=value: write --set wordpress.replicas=2", kv)
		}
		if _, dup := values[k]; dup {
			return nil, fmt.Errorf("--set %s is given twice: give each key once", k)
		}
		values[k] = v
	}
	return values, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
