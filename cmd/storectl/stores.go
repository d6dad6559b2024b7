package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func newCreateCommand(o *options) *cobra.Command {
	var name, engine, requestID string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a store",
		Long: `Create a store. Every create carries a request id, which makes it
idempotent: the same id from the same user within 24 hours returns the store
the first create made instead of a second one, and with another --name or
--engine is refused (AlreadyExists). storectl picks a random id on each run;
a script that may run a create again, after a timeout say, passes its own
with --request-id, the same on every try.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := parseEngine(engine)
			if err != nil {
				return err
			}
			if requestID == "" {
				requestID = rand.Text()
			}
			req := &storev1.CreateStoreRequest{Store: &storev1.Store{DisplayName: name, Engine: e}, RequestId: requestID}
			return o.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				st, err := s.CreateStore(ctx, req)
				return o.printStores(err, st)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "display name of the store")
	cmd.Flags().StringVar(&engine, "engine", "woocommerce", "woocommerce or medusa")
	cmd.Flags().StringVar(&requestID, "request-id", "", "idempotency key, at most 128 printable ASCII characters such as a UUID: a create run again with it returns the same store (default: random on each run)")
	return cmd
}

func newListCommand(o *options) *cobra.Command {
	var phase string
	cmd := &cobra.Command{
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
			return o.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				var all []*storev1.Store
				token := ""
				for {
					page, err := s.ListStores(ctx, &storev1.ListStoresRequest{PageSize: 500, PageToken: token, Phase: p})
					if err != nil {
						return o.printStores(err)
					}
					all = append(all, page.GetStores()...)
					if token = page.GetNextPageToken(); token == "" {
						return o.printStores(nil, all...)
					}
				}
			})
		},
	}
	cmd.Flags().StringVar(&phase, "phase", "", "only stores in this phase")
	return cmd
}

func newGetCommand(o *options) *cobra.Command {
	return newStoreByIDCommand(o, "get", "Show a store", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.GetStore(ctx, &storev1.GetStoreRequest{Id: id})
	})
}

func newDeleteCommand(o *options) *cobra.Command {
	return newStoreByIDCommand(o, "delete", "Delete a store and everything it owns", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.DeleteStore(ctx, &storev1.DeleteStoreRequest{Id: id})
	})
}

func newRetryCommand(o *options) *cobra.Command {
	return newStoreByIDCommand(o, "retry", "Provision a FAILED store again", func(ctx context.Context, s storev1.StoreServiceClient, id string) (*storev1.Store, error) {
		return s.RetryStore(ctx, &storev1.RetryStoreRequest{Id: id})
	})
}

// newStoreByIDCommand returns the command `use ID`, which makes call with
// the id and prints the store it returns.
func newStoreByIDCommand(o *options, use, short string, call func(context.Context, storev1.StoreServiceClient, string) (*storev1.Store, error)) *cobra.Command {
	return &cobra.Command{
		Use: use + " ID", Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				st, err := call(ctx, s, args[0])
				return o.printStores(err, st)
			})
		},
	}
}

func newUpgradeCommand(o *options) *cobra.Command {
	var chartVersion string
	var sets []string
	cmd := &cobra.Command{
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
			return o.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
				st, err := s.UpgradeStore(ctx, &storev1.UpgradeStoreRequest{Id: args[0], ChartVersion: chartVersion, Values: values})
				return o.printStores(err, st)
			})
		},
	}
	cmd.Flags().StringVar(&chartVersion, "chart-version", "", "chart version to move to (default: the chart built into the platform, or the one the store runs if newer)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "Helm value override key=value, by dotted path; repeat for several")
	return cmd
}

func newWatchCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "watch",
		Short: "Print stores, then every change, until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withStores(func(ctx context.Context, s storev1.StoreServiceClient) error {
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
					if err := o.printStores(nil, ev.GetStore()); err != nil {
						return err
					}
				}
			})
		},
	}
}

// printStores prints stores as a table or as JSON lines, or err, a gRPC
// error, as describe does.
func (o *options) printStores(err error, stores ...*storev1.Store) error {
	if err != nil {
		return describe(err)
	}
	return printList(o, stores, "ID\tNAME\tENGINE\tPHASE\tCHART\tCHECKED\tOWNER\tURL\tAGE\tREASON", func(st *storev1.Store) []string {
		return []string{st.GetId(), st.GetDisplayName(),
			strings.ToLower(strings.TrimPrefix(st.GetEngine().String(), "ENGINE_")),
			strings.TrimPrefix(st.GetPhase().String(), "PHASE_"), st.GetChartVersion(), orderChecked(st, time.Now()), st.GetOwner(), st.GetUrl(),
			time.Since(st.GetCreateTime().AsTime()).Round(time.Second).String(), st.GetFailureReason()}
	})
}

// orderChecked says how long before now the store's order check last
// passed, or "-" when none has.
func orderChecked(st *storev1.Store, now time.Time) string {
	if st.GetOrderCheckTime() == nil {
		return "-"
	}
	return now.Sub(st.GetOrderCheckTime().AsTime()).Round(time.Second).String() + " ago"
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
