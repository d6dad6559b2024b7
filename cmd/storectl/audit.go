package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
)

func newAuditCommand(o *options) *cobra.Command {
	var store, actor, action string
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(o.auditAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				req := &auditv1.ListAuditEntriesRequest{StoreId: store, Actor: actor, Action: action, PageSize: 1000}
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
				return o.printAudit(all)
			})
		},
	}
	cmd.Flags().StringVar(&store, "store", "", "only entries about this store")
	cmd.Flags().StringVar(&actor, "actor", "", "only entries by this user")
	cmd.Flags().StringVar(&action, "action", "", "only this action: create, delete, retry, upgrade, ready, failure, deleted")
	cmd.Flags().DurationVar(&since, "since", 0, "only entries newer than this, such as 1h")
	cmd.AddCommand(newAuditVerifyCommand(o))
	return cmd
}

func newAuditVerifyCommand(o *options) *cobra.Command {
	var knownHash string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain (admins); exit status 1 when it is broken",
		Long: `Walks the audit log's hash chain from the first kept entry to the newest and
reports the first entry whose content or link does not match, or that the
chain is intact. Keep the head hash it prints somewhere the audit database's
administrators cannot write, and pass it back with --known-hash: a rewrite
of the whole table with every hash recomputed is then detected too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(o.auditAddr, func(ctx context.Context, conn *grpc.ClientConn) error {
				resp, err := auditv1.NewAuditServiceClient(conn).VerifyAuditEntries(ctx, &auditv1.VerifyAuditEntriesRequest{KnownHash: knownHash})
				if err != nil {
					return describe(err)
				}
				if err := o.printVerify(resp); err != nil {
					return err
				}
				if !resp.GetIntact() {
					return fmt.Errorf("the audit log's hash chain is broken at entry %d", resp.GetFirstBreak().GetSequence())
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&knownHash, "known-hash", "", "head hash of an earlier verification, kept outside the audit database; the chain must still contain it")
	return cmd
}

func (o *options) printAudit(entries []*auditv1.AuditEntry) error {
	return printList(o, entries, "TIME\tACTION\tACTOR\tSTORE\tDETAIL", func(e *auditv1.AuditEntry) []string {
		return []string{e.GetTime().AsTime().Local().Format(time.DateTime), e.GetAction(), e.GetActor(), e.GetStoreId(), e.GetDetail()}
	})
}

func (o *options) printVerify(resp *auditv1.VerifyAuditEntriesResponse) error {
	if o.output == "json" {
		return o.printJSON(resp)
	}
	start := "the first entry ever"
	if resp.GetCheckpointSequence() > 0 {
		start = fmt.Sprintf("checkpoint %d (hash %s; older entries were deleted by retention)", resp.GetCheckpointSequence(), resp.GetCheckpointHash())
	}
	if resp.GetIntact() {
		fmt.Fprintf(o.out, "intact: %d entries checked, from %s to entry %d\nhead hash: %s\n",
			resp.GetCheckedEntries(), start, resp.GetHeadSequence(), resp.GetHeadHash())
		return nil
	}
	b := resp.GetFirstBreak()
	fmt.Fprintf(o.out, "BROKEN (%s) at entry %d, after %d intact entries from %s:\n  %s\n",
		strings.ToLower(strings.TrimPrefix(b.GetKind().String(), "KIND_")), b.GetSequence(), resp.GetCheckedEntries(), start, b.GetMessage())
	if e := b.GetEntry(); e != nil {
		fmt.Fprintf(o.out, "  as stored now: event %s, %s %s by %s on store %s: %q\n",
			e.GetId(), e.GetTime().AsTime().UTC().Format(time.RFC3339), e.GetAction(), e.GetActor(), e.GetStoreId(), e.GetDetail())
	}
	return nil
}
