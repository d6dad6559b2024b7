package rpc

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// roundRobin spreads calls over every address a target resolves to.
const roundRobin = `{"loadBalancingConfig": [{"round_robin": {}}]}`

// ClientOptions are the dial options of one service calling another inside
// the platform: plaintext, a span of every call whose trace context the
// server continues, and calls spread round-robin over every address the
// target resolves to. With a target such as
// "dns:///platform-api-pods:9090" (a headless Service, one address per
// pod) every replica gets its share; the servers' MaxConnectionAge makes
// clients resolve again, so new replicas are found.
func ClientOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(traceOptions()...)),
	}
}
