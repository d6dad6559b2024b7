package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func newTokenCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens"}
	cmd.AddCommand(newTokenCreateCommand(o), newTokenListCommand(o), newTokenRevokeCommand(o))
	return cmd
}

func newTokenCreateCommand(o *options) *cobra.Command {
	var user, description string
	var admin bool
	var quota int32
	var ttl time.Duration
	cmd := &cobra.Command{
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
			req := &storev1.CreateTokenRequest{User: user, Admin: admin, StoreQuota: quota, Description: description}
			if ttl != 0 {
				req.Ttl = durationpb.New(ttl)
			}
			return o.withUsers(func(ctx context.Context, u storev1.UserServiceClient) error {
				resp, err := u.CreateToken(ctx, req)
				if err != nil {
					return describe(err)
				}
				return o.printNewToken(resp)
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "user the token is for (default: yourself)")
	cmd.Flags().BoolVar(&admin, "admin", false, "make a new user an admin")
	cmd.Flags().Int32Var(&quota, "store-quota", 0, "store quota of a new user (0: the default)")
	cmd.Flags().StringVar(&description, "description", "", "what the token is for")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "how long the token lasts, such as 720h (default: the api's --token-max-ttl)")
	return cmd
}

func newTokenListCommand(o *options) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your tokens that have not expired (admins: --user's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withUsers(func(ctx context.Context, u storev1.UserServiceClient) error {
				resp, err := u.ListTokens(ctx, &storev1.ListTokensRequest{User: user})
				if err != nil {
					return describe(err)
				}
				return o.printTokens(resp.GetTokens())
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "whose tokens (default: yours; another user's for admins)")
	return cmd
}

func newTokenRevokeCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token at once, by the id 'token list' shows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.withUsers(func(ctx context.Context, u storev1.UserServiceClient) error {
				t, err := u.DeleteToken(ctx, &storev1.DeleteTokenRequest{Id: args[0]})
				if err != nil {
					return describe(err)
				}
				if o.output == "json" {
					return o.printJSON(t)
				}
				fmt.Fprintf(o.out, "revoked token %s of %s (%s)\n", t.GetId(), t.GetUser(), t.GetDescription())
				return nil
			})
		},
	}
}

// printNewToken prints a token just issued, with its secret, which the api
// shows only once.
func (o *options) printNewToken(resp *storev1.CreateTokenResponse) error {
	if o.output == "json" {
		return o.printJSON(resp)
	}
	u := resp.GetUser()
	account := "an existing account"
	if resp.GetUserCreated() {
		account = "a new account"
	}
	if u.GetSignIn() {
		account = "an existing account that signs in with " + u.GetOidcIssuer()
	}
	fmt.Fprintf(o.out, "token %s for %s, %s (admin: %t, store quota: %d), expires %s\n",
		resp.GetInfo().GetId(), u.GetName(), account, u.GetAdmin(), u.GetStoreQuota(),
		resp.GetInfo().GetExpireTime().AsTime().Local().Format(time.DateTime))
	fmt.Fprintf(o.out, "it is shown only once:\n%s\n", resp.GetToken())
	return nil
}

func (o *options) printTokens(tokens []*storev1.Token) error {
	return printList(o, tokens, "ID\tUSER\tKIND\tDESCRIPTION\tCREATED\tEXPIRES\tLAST USED", func(t *storev1.Token) []string {
		lastUsed := "never"
		if t.GetLastUseTime() != nil {
			lastUsed = t.GetLastUseTime().AsTime().Local().Format(time.DateTime)
		}
		return []string{t.GetId(), t.GetUser(),
			strings.ToLower(strings.TrimPrefix(t.GetKind().String(), "TOKEN_KIND_")), t.GetDescription(),
			t.GetCreateTime().AsTime().Local().Format(time.DateTime), t.GetExpireTime().AsTime().Local().Format(time.DateTime), lastUsed}
	})
}
