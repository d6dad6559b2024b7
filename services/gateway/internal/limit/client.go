package limit

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the address ranges of the reverse proxies (ingress
// controllers, load balancers) whose X-Forwarded-For the gateway believes.
// It implements flag.Value as a comma-separated list of CIDRs or addresses.
type Proxies []netip.Prefix

// String returns the ranges, comma-separated.
func (p *Proxies) String() string {
	s := make([]string, len(*p))
	for i, r := range *p {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// Set parses a comma-separated list of CIDRs (10.0.0.0/8) or addresses
// (a single proxy) and replaces the ranges with it.
func (p *Proxies) Set(v string) error {
	*p = nil
	for f := range strings.SplitSeq(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("trusted proxy %q: want a CIDR such as 10.0.0.0/8 or an address", f)
			}
			r = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		*p = append(*p, r.Masked())
	}
	return nil
}

func (p Proxies) trusted(a netip.Addr) bool {
	for _, r := range p {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr returns the address of the client that sent r. It is the
// peer of the connection (RemoteAddr), unless that peer is a trusted proxy:
// then X-Forwarded-For is read from its end, the entry each proxy appended,
// and the first address that is not a trusted proxy is the client's.
// Entries to its left were written by the client and are never believed.
// When every entry is a trusted proxy the leftmost one is the client; an
// entry that is not an address ends the walk at the last proxy believed.
func (p Proxies) ClientAddr(r *http.Request) netip.Addr {
	client := remoteAddr(r)
	if !client.IsValid() || !p.trusted(client) {
		return client
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return client
		}
		client = a.Unmap()
		if !p.trusted(client) {
			return client
		}
	}
	return client
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// clientKey is what the limiter counts a client by: its IPv4 address, or
// the /64 network of its IPv6 address, since one IPv6 host commonly holds a
// whole /64 and could otherwise take a fresh limit with each address.
func clientKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}
