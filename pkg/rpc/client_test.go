package rpc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/storeprov/storeprov/pkg/rpc"
)

// TestClientOptionsSpreadCallsOverReplicas dials a target that resolves to
// two servers, as a headless Service resolves to its pods: every server
// gets calls, not only the first.
func TestClientOptionsSpreadCallsOverReplicas(t *testing.T) {
	var addrs []resolver.Address
	var registries []*prometheus.Registry
	for range 2 {
		reg := prometheus.NewRegistry()
		srv := rpc.NewServer(rpc.Options{Service: "replica", Registry: reg})
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		addrs = append(addrs, resolver.Address{Addr: lis.Addr().String()})
		registries = append(registries, reg)
	}
	pods := manual.NewBuilderWithScheme("pods")
	pods.InitialState(resolver.State{Addresses: addrs})
	conn, err := grpc.NewClient("pods:///platform-api-pods:9090", append(rpc.ClientOptions(), grpc.WithResolvers(pods))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	call := func() {
		t.Helper()
		if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// Round robin uses a replica once its connection is up: the first calls
	// may all go to the one that connected first.
	deadline := time.Now().Add(10 * time.Second)
	for handled(t, registries[0]) == 0 || handled(t, registries[1]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the replicas handled %v and %v calls; want both some", handled(t, registries[0]), handled(t, registries[1]))
		}
		call()
		time.Sleep(10 * time.Millisecond)
	}
	before := []float64{handled(t, registries[0]), handled(t, registries[1])}
	for range 20 {
		call()
	}
	for i, reg := range registries {
		if n := handled(t, reg) - before[i]; n < 8 {
			t.Errorf("replica %d handled %v of 20 calls; want them spread evenly over both", i, n)
		}
	}
}

// handled is how many calls the server of reg completed.
func handled(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "storeprov_grpc_handled_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
