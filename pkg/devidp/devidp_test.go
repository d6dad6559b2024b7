package devidp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/storeprov/storeprov/pkg/devidp"
)

func TestLogin(t *testing.T) {
	const callback = "http://127.0.0.1:1/callback"
	idp, err := devidp.Start(devidp.Config{
		Addr:    "127.0.0.1:0",
		Users:   []devidp.User{{Subject: "u1", Username: "alice", Password: "pw", Email: "alice@example.com", Name: "Alice"}},
		Clients: []devidp.Client{{ID: "dashboard", Secret: "s3cret", RedirectURIs: []string{callback}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()

	resp, err := http.Get(idp.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var discovery struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
	}
	err = json.NewDecoder(resp.Body).Decode(&discovery)
	resp.Body.Close()
	if err != nil || discovery.Issuer != idp.Issuer {
		t.Fatalf("discovery: %+v, %v; want issuer %s", discovery, err, idp.Issuer)
	}
	authorize := discovery.AuthorizationEndpoint + "?" + url.Values{
		"client_id": {"dashboard"}, "redirect_uri": {callback}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"st4te"},
	}.Encode()

	ctx := context.Background()
	if _, err := idp.Login(ctx, nil, authorize, "alice", "wrong"); err == nil {
		t.Error("a wrong password was accepted")
	}
	got, err := idp.Login(ctx, nil, authorize, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if got.Host != "127.0.0.1:1" || got.Query().Get("code") == "" || got.Query().Get("state") != "st4te" {
		t.Errorf("callback %s: want the redirect URI with a code and the state", got)
	}
}
