package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/database/databasetest"
	"github.com/storeprov/storeprov/services/api/internal/app"
)

// wantCode fails unless err has code and a message containing says.
func wantCode(t *testing.T, what string, err error, code codes.Code, says string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), says) {
		t.Errorf("%s: %v; want %s saying %q", what, err, code, says)
	}
}

func TestTokensExpireAndAreListedAndRevoked(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			e := startAPI(t, dbURL, nats, func(o *app.Options) { o.TokenMaxTTL = 48 * time.Hour })
			create := func(ctx context.Context, req *storev1.CreateTokenRequest) *storev1.CreateTokenResponse {
				t.Helper()
				resp, err := e.users.CreateToken(ctx, req)
				if err != nil {
					t.Fatalf("CreateToken %v: %v", req, err)
				}
				return resp
			}

			// The default lifetime is the longest; a shorter one is kept; a
			// longer one is refused, naming the flag.
			ci := create(e.admin(), &storev1.CreateTokenRequest{User: "carol", Description: "ci"})
			if !ci.GetUserCreated() || ci.GetUser().GetSignIn() || ci.GetInfo().GetId() == "" || ci.GetInfo().GetDescription() != "ci" || ci.GetInfo().GetUser() != "carol" {
				t.Errorf("carol's first token: %v; want a new token user, an id and the description", ci)
			}
			if left := time.Until(ci.GetInfo().GetExpireTime().AsTime()); left < 47*time.Hour || left > 48*time.Hour {
				t.Errorf("default token lifetime %s; want --token-max-ttl, 48h", left)
			}
			laptop := create(e.as(ci.GetToken()), &storev1.CreateTokenRequest{Description: "laptop", Ttl: durationpb.New(time.Hour)})
			if left := time.Until(laptop.GetInfo().GetExpireTime().AsTime()); left < 59*time.Minute || left > time.Hour {
				t.Errorf("a token asked for 1h expires in %s", left)
			}
			_, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{Ttl: durationpb.New(49 * time.Hour)})
			wantCode(t, "a ttl above the maximum", err, codes.InvalidArgument, "--token-max-ttl")
			_, err = e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{Ttl: durationpb.New(-time.Hour)})
			wantCode(t, "a negative ttl", err, codes.InvalidArgument, "positive")

			// Listing: one's own, newest first; an admin's of anyone.
			list, err := e.users.ListTokens(e.as(ci.GetToken()), &storev1.ListTokensRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tok := range list.GetTokens() {
				got = append(got, tok.GetDescription())
				if tok.GetUser() != "carol" || tok.GetKind() != storev1.TokenKind_TOKEN_KIND_API || tok.GetExpireTime() == nil {
					t.Errorf("listed token %v", tok)
				}
			}
			if strings.Join(got, ",") != "laptop,ci" {
				t.Errorf("carol's tokens: %v; want laptop, ci", got)
			}
			byAdmin, err := e.users.ListTokens(e.admin(), &storev1.ListTokensRequest{User: "carol"})
			if err != nil || len(byAdmin.GetTokens()) != 2 {
				t.Errorf("the admin's list of carol's tokens: %v, %v", byAdmin, err)
			}
			_, err = e.users.ListTokens(e.as(ci.GetToken()), &storev1.ListTokensRequest{User: "admin"})
			wantCode(t, "carol listing the admin's tokens", err, codes.PermissionDenied, "only an admin")

			// Last use is written, at most once a minute.
			for _, tok := range list.GetTokens() {
				if tok.GetDescription() == "ci" && tok.GetLastUseTime() == nil {
					t.Errorf("the ci token listed itself but has no last use: %v", tok)
				}
				if tok.GetDescription() == "laptop" && tok.GetLastUseTime() != nil {
					t.Errorf("the laptop token was never used but has a last use: %v", tok)
				}
			}
			again, err := e.users.ListTokens(e.as(ci.GetToken()), &storev1.ListTokensRequest{})
			if err != nil {
				t.Fatal(err)
			}
			first, second := list.GetTokens()[1].GetLastUseTime().AsTime(), again.GetTokens()[1].GetLastUseTime().AsTime()
			if !first.Equal(second) {
				t.Errorf("last use moved from %s to %s within a minute; want one write a minute", first, second)
			}

			// Revoking: someone else's token is not found; one's own is
			// refused on its next call; an admin revokes anyone's.
			_, err = e.users.DeleteToken(e.as(ci.GetToken()), &storev1.DeleteTokenRequest{Id: tokenID(t, e, e.admin(), "admin")})
			wantCode(t, "carol revoking the admin's token", err, codes.NotFound, "token not found")
			_, err = e.users.DeleteToken(e.as(ci.GetToken()), &storev1.DeleteTokenRequest{Id: "not-an-id"})
			wantCode(t, "a malformed id", err, codes.NotFound, "not a token id")
			gone, err := e.users.DeleteToken(e.as(ci.GetToken()), &storev1.DeleteTokenRequest{Id: laptop.GetInfo().GetId()})
			if err != nil || gone.GetDescription() != "laptop" {
				t.Fatalf("carol revoking her laptop token: %v, %v", gone, err)
			}
			_, err = e.users.GetCurrentUser(e.as(laptop.GetToken()), &storev1.GetCurrentUserRequest{})
			wantCode(t, "a revoked token", err, codes.Unauthenticated, "")
			if _, err := e.users.DeleteToken(e.admin(), &storev1.DeleteTokenRequest{Id: ci.GetInfo().GetId()}); err != nil {
				t.Fatalf("the admin revoking carol's token: %v", err)
			}
			_, err = e.stores.ListStores(e.as(ci.GetToken()), &storev1.ListStoresRequest{})
			wantCode(t, "a token an admin revoked", err, codes.Unauthenticated, "")

			// A token stops working when it expires.
			short := create(e.admin(), &storev1.CreateTokenRequest{User: "carol", Ttl: durationpb.New(time.Second)})
			if _, err := e.users.GetCurrentUser(e.as(short.GetToken()), &storev1.GetCurrentUserRequest{}); err != nil {
				t.Fatalf("a fresh 1s token: %v", err)
			}
			time.Sleep(time.Until(short.GetInfo().GetExpireTime().AsTime()) + 50*time.Millisecond)
			_, err = e.users.GetCurrentUser(e.as(short.GetToken()), &storev1.GetCurrentUserRequest{})
			wantCode(t, "an expired API token", err, codes.Unauthenticated, "expired")
			list, err = e.users.ListTokens(e.admin(), &storev1.ListTokensRequest{User: "carol"})
			if err != nil || len(list.GetTokens()) != 0 {
				t.Errorf("carol's tokens after revoking two and one expiring: %v, %v; want none", list, err)
			}
		})
	})
}

// tokenID returns the id of user's first listed token.
func tokenID(t *testing.T, e *apiEnv, ctx context.Context, user string) string {
	t.Helper()
	list, err := e.users.ListTokens(ctx, &storev1.ListTokensRequest{User: user})
	if err != nil || len(list.GetTokens()) == 0 {
		t.Fatalf("ListTokens %s: %v, %v", user, list, err)
	}
	return list.GetTokens()[0].GetId()
}

func TestDemotingAUserHoldsForAllItsTokensAtOnce(t *testing.T) {
	each(t, func(t *testing.T, e *apiEnv) {
		var tokens []string
		for i := range 2 {
			req := &storev1.CreateTokenRequest{User: "dave"}
			if i == 0 {
				req.Admin = true
			}
			resp, err := e.users.CreateToken(e.admin(), req)
			if err != nil {
				t.Fatal(err)
			}
			tokens = append(tokens, resp.GetToken())
		}
		for _, tok := range tokens {
			if me, err := e.users.GetCurrentUser(e.as(tok), &storev1.GetCurrentUserRequest{}); err != nil || !me.GetAdmin() {
				t.Fatalf("dave before the demotion: %v, %v; want admin", me, err)
			}
		}
		// Asking CreateToken to change an existing user is an error that
		// says what to use.
		_, err := e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "dave", StoreQuota: 9})
		wantCode(t, "a quota for an existing user", err, codes.InvalidArgument, "storectl user set dave")
		_, err = e.users.CreateToken(e.admin(), &storev1.CreateTokenRequest{User: "dave", Admin: true})
		wantCode(t, "admin for an existing user", err, codes.InvalidArgument, "storectl user set dave")

		u, err := e.users.UpdateUser(e.admin(), &storev1.UpdateUserRequest{Name: "dave", Admin: proto.Bool(false), StoreQuota: proto.Int32(2)})
		if err != nil || u.GetAdmin() || u.GetStoreQuota() != 2 {
			t.Fatalf("UpdateUser dave: %v, %v", u, err)
		}
		for i, tok := range tokens {
			me, err := e.users.GetCurrentUser(e.as(tok), &storev1.GetCurrentUserRequest{})
			if err != nil || me.GetAdmin() {
				t.Errorf("dave's token %d after the demotion: %v, %v; want not admin", i, me, err)
			}
			_, err = e.users.ListTokens(e.as(tok), &storev1.ListTokensRequest{User: "admin"})
			wantCode(t, "a demoted user listing the admin's tokens", err, codes.PermissionDenied, "only an admin")
			_, err = e.users.CreateToken(e.as(tok), &storev1.CreateTokenRequest{User: "eve"})
			wantCode(t, "a demoted user creating a user", err, codes.PermissionDenied, "only an admin")
		}

		_, err = e.users.UpdateUser(e.as(tokens[0]), &storev1.UpdateUserRequest{Name: "dave", Admin: proto.Bool(true)})
		wantCode(t, "a user promoting itself", err, codes.PermissionDenied, "only an admin")
		_, err = e.users.UpdateUser(e.admin(), &storev1.UpdateUserRequest{Name: "admin", Admin: proto.Bool(false)})
		wantCode(t, "demoting the only admin", err, codes.InvalidArgument, "only admin")
		_, err = e.users.UpdateUser(e.admin(), &storev1.UpdateUserRequest{Name: "nobody", Admin: proto.Bool(false)})
		wantCode(t, "an unknown user", err, codes.NotFound, "nobody")
		_, err = e.users.UpdateUser(e.admin(), &storev1.UpdateUserRequest{Name: "dave"})
		wantCode(t, "no change", err, codes.InvalidArgument, "nothing to change")
	})
}

// TestTokenRoutesOverREST checks the REST mappings the gateway serves,
// through the generated gateway handlers.
func TestTokenRoutesOverREST(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		var grpcAddr string
		e := startAPI(t, "sqlite://"+filepath.Join(t.TempDir(), "api.db"), nats, func(o *app.Options) {
			ready := o.OnReady
			o.OnReady = func(a app.Addrs) { grpcAddr = a.GRPC; ready(a) }
		})
		mux := runtime.NewServeMux()
		if err := storev1.RegisterUserServiceHandlerFromEndpoint(context.Background(), mux, grpcAddr, []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		call := func(method, path, body, token string, want int) map[string]any {
			t.Helper()
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != want {
				t.Fatalf("%s %s: %d %s; want %d", method, path, resp.StatusCode, b, want)
			}
			var out map[string]any
			_ = json.Unmarshal(b, &out)
			return out
		}
		created := call("POST", "/v1/tokens", `{"user":"frank","description":"rest","ttl":"3600s"}`, e.token, 200)
		info, _ := created["info"].(map[string]any)
		id, _ := info["id"].(string)
		frank, _ := created["token"].(string)
		if id == "" || info["expireTime"] == nil || frank == "" {
			t.Fatalf("POST /v1/tokens: %v", created)
		}
		listed := call("GET", "/v1/tokens?user=frank", "", e.token, 200)
		if toks, _ := listed["tokens"].([]any); len(toks) != 1 {
			t.Errorf("GET /v1/tokens?user=frank: %v", listed)
		}
		call("PATCH", "/v1/users/frank", `{"storeQuota":7}`, e.token, 200)
		call("DELETE", "/v1/tokens/"+id, "", e.token, 200)
		call("GET", "/v1/tokens", "", frank, 401)
	})
}

func TestFirstAdminTokenComesFromAFileOrIsRefused(t *testing.T) {
	bustest.Each(t, func(t *testing.T, nats *bustest.Env) {
		databasetest.Each(t, func(t *testing.T, dbURL string) {
			secret := "sp_" + strings.Repeat("k", 40)
			from := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(from, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			e := startAPI(t, dbURL, nats, func(o *app.Options) {
				o.AdminTokenFile, o.AdminTokenFromFile = "", from
			})
			me, err := e.users.GetCurrentUser(e.as(secret), &storev1.GetCurrentUserRequest{})
			if err != nil || me.GetName() != "admin" || !me.GetAdmin() {
				t.Fatalf("the token of --admin-token-from-file: %v, %v; want the admin", me, err)
			}
			list, err := e.users.ListTokens(e.as(secret), &storev1.ListTokensRequest{})
			if err != nil || len(list.GetTokens()) != 1 || time.Until(list.GetTokens()[0].GetExpireTime().AsTime()) > 90*24*time.Hour {
				t.Errorf("the first admin's token: %v, %v; want one that expires within 90 days", list, err)
			}
		})
	})
	for _, c := range []struct {
		name string
		opts func(o *app.Options)
		says string
	}{
		{"neither file", func(o *app.Options) {}, "--admin-token-file"},
		{"both files", func(o *app.Options) { o.AdminTokenFile, o.AdminTokenFromFile = "a", "b" }, "exclude each other"},
		{"a token without the prefix", func(o *app.Options) {
			o.AdminTokenFromFile = filepath.Join(t.TempDir(), "token")
			_ = os.WriteFile(o.AdminTokenFromFile, []byte("hunter2"), 0o600)
		}, "must start with"},
		{"a tiny maximum lifetime", func(o *app.Options) { o.TokenMaxTTL = time.Second }, "--token-max-ttl"},
	} {
		o := app.Options{DatabaseURL: "sqlite://" + filepath.Join(t.TempDir(), "api.db"), NATSURL: "nats://127.0.0.1:1"}
		c.opts(&o)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := app.Run(ctx, o)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want an error saying %q", c.name, err, c.says)
		}
	}
}
