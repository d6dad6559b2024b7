package bus

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RunEmbedded starts an in-process NATS server with JetStream storing its
// data under dir, listening on host:port (port -1 picks a free one). The
// caller must Shutdown it.
func RunEmbedded(dir, host string, port int) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "storeprov-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cannot create embedded NATS server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS server did not start within 10s")
	}
	return s, nil
}
