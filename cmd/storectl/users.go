package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
)

func newUserCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users (admins)"}
	cmd.AddCommand(newUserSetCommand(o))
	return cmd
}

func newUserSetCommand(o *options) *cobra.Command {
	var admin bool
	var quota int32
	cmd := &cobra.Command{
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
				req.Admin = &admin
			}
			if cmd.Flags().Changed("store-quota") {
				req.StoreQuota = &quota
			}
			if req.Admin == nil && req.StoreQuota == nil {
				return errors.New("nothing to change: give --admin=true|false or --store-quota N")
			}
			return o.withUsers(func(ctx context.Context, u storev1.UserServiceClient) error {
				user, err := u.UpdateUser(ctx, req)
				if err != nil {
					return describe(err)
				}
				return o.printUser(user)
			})
		},
	}
	cmd.Flags().BoolVar(&admin, "admin", false, "make the user an admin (true) or not (false)")
	cmd.Flags().Int32Var(&quota, "store-quota", 0, "stores the user may have")
	return cmd
}

func newWhoamiCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the user of the token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.withUsers(func(ctx context.Context, u storev1.UserServiceClient) error {
				user, err := u.GetCurrentUser(ctx, &storev1.GetCurrentUserRequest{})
				if err != nil {
					return describe(err)
				}
				return o.printUser(user)
			})
		},
	}
}

func (o *options) printUser(u *storev1.User) error {
	if o.output == "json" {
		return o.printJSON(u)
	}
	fmt.Fprintf(o.out, "%s (admin: %t, store quota: %d)\n", u.GetName(), u.GetAdmin(), u.GetStoreQuota())
	return nil
}
