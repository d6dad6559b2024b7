package limit

import (
	"net/http"
	"testing"
)

func TestClientAddrBelievesOnlyWhatTrustedProxiesAppended(t *testing.T) {
	var proxies Proxies
	if err := proxies.Set("10.0.0.0/8, 192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, reason, remote string
		forwarded            []string
		want                 string
	}{
		{"direct client", "a peer that is no proxy is the client, whatever it forwards", "203.0.113.9:4000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"through the ingress", "the proxy appended the client", "10.1.2.3:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"forged entry", "entries left of the proxy's own are the client's words", "10.1.2.3:80", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},
		{"two proxies", "each trusted hop is skipped from the right", "10.1.2.3:80", []string{"203.0.113.9, 192.0.2.7"}, "203.0.113.9"},
		{"several headers", "headers are one list, in order", "10.1.2.3:80", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"only proxies", "the leftmost trusted hop stands for the client", "10.1.2.3:80", []string{"10.9.9.9"}, "10.9.9.9"},
		{"garbage", "an entry that is no address ends the walk at the last proxy", "10.1.2.3:80", []string{"203.0.113.9, bogus"}, "10.1.2.3"},
		{"no header", "the proxy itself", "10.1.2.3:80", nil, "10.1.2.3"},
		{"mapped IPv4", "IPv4 in IPv6 is IPv4", "[::ffff:203.0.113.9]:1", nil, "203.0.113.9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, f := range c.forwarded {
				r.Header.Add("X-Forwarded-For", f)
			}
			if got := proxies.ClientAddr(r).String(); got != c.want {
				t.Errorf("ClientAddr = %s, want %s: %s", got, c.want, c.reason)
			}
		})
	}
}

func TestIPv6ClientsAreCountedByTheirSlash64(t *testing.T) {
	r1 := &http.Request{RemoteAddr: "[2001:db8:1:2::1]:1"}
	r2 := &http.Request{RemoteAddr: "[2001:db8:1:2:ffff::9]:1"}
	r3 := &http.Request{RemoteAddr: "[2001:db8:1:3::1]:1"}
	var p Proxies
	k1, k2, k3 := clientKey(p.ClientAddr(r1)), clientKey(p.ClientAddr(r2)), clientKey(p.ClientAddr(r3))
	if k1 != k2 || k1 == k3 {
		t.Errorf("keys %s, %s, %s; want the first two equal (one /64) and the third apart", k1, k2, k3)
	}
}
