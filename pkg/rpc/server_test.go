package rpc_test

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/rpc"
)

// TestServerAnswersReflectionAndHealthWithoutAToken is what
// `grpcurl -plaintext ADDR list` and health probes rely on.
func TestServerAnswersReflectionAndHealthWithoutAToken(t *testing.T) {
	deny := auth.AuthenticatorFunc(func(context.Context, string) (auth.Principal, error) {
		return auth.Principal{}, auth.ErrUnauthenticated
	})
	srv := rpc.NewServer(rpc.Options{Service: "test", Auth: deny, Registry: prometheus.NewRegistry()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }() // returns once the test stops the server
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx := context.Background()

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "grpc.health.v1.Health") || !slices.Contains(names, "grpc.reflection.v1.ServerReflection") {
		t.Errorf("reflection lists %v", names)
	}

	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check = %v, %v", h, err)
	}

	// The rest of the health service is public as well.
	_, err = healthpb.NewHealthClient(conn).List(ctx, &healthpb.HealthListRequest{})
	if err != nil && status.Code(err) == codes.Unauthenticated {
		t.Errorf("health List is public too, got %v", err)
	}
}
