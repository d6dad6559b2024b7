package signin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidateSaysWhatToFix(t *testing.T) {
	good := Config{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s", RedirectURL: "https://dash.example.com/auth/callback"}
	if err := good.Validate(); err != nil {
		t.Fatalf("a complete config: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("sign-in off: %v", err)
	}
	for _, c := range []struct {
		change func(*Config)
		says   string
	}{
		{func(c *Config) { c.ClientSecret = "" }, "client secret"},
		{func(c *Config) { c.ClientID = "" }, "--oidc-client-id"},
		{func(c *Config) { c.RedirectURL = "" }, "--oidc-redirect-url"},
		{func(c *Config) { c.RedirectURL = "https://dash.example.com/callback" }, "ending in /auth/callback"},
		{func(c *Config) { c.RedirectURL = "dash.example.com/auth/callback" }, "--oidc-redirect-url"},
	} {
		cfg := good
		c.change(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%+v: %v; want an error saying %q", cfg, err, c.says)
		}
	}
}

func TestConfigTellsTheDashboardWhatToOffer(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, `{"oidc":{"enabled":false}}`},
		{Config{Issuer: "https://id.example.com", ClientID: "c", ClientSecret: "s", RedirectURL: "https://d/auth/callback", ProviderName: "Acme SSO"},
			`{"oidc":{"enabled":true,"providerName":"Acme SSO","loginUrl":"/auth/login"}}`},
	} {
		mux := http.NewServeMux()
		New(c.cfg, nil, nil).Register(mux)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", ConfigPath, nil))
		var got, want any
		_ = json.Unmarshal(rec.Body.Bytes(), &got)
		_ = json.Unmarshal([]byte(c.want), &want)
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if rec.Code != 200 || string(gb) != string(wb) || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %s; want %s, not cached", ConfigPath, rec.Code, rec.Body, c.want)
		}
		rec = httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", LoginPath, nil))
		if enabled := c.cfg.Issuer != ""; enabled != (rec.Code != http.StatusNotFound) {
			t.Errorf("%s with sign-in enabled=%v: %d", LoginPath, enabled, rec.Code)
		}
	}
}
