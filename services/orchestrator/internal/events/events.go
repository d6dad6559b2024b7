// Package events publishes what the orchestrator observed about a store:
// StoreStatusChanged on the store's status subject and AuditEvent on its
// audit subject, each with a deterministic Nats-Msg-Id so that the same
// fact published twice (a retry, a second worker) is stored once. Each
// event carries the trace of the command it reports on.
package events

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/lease"
	"github.com/storeprov/storeprov/services/orchestrator/internal/phase"
)

// DefaultTimeout bounds one publish when Publisher.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Publisher sends status changes and audit events to JetStream.
type Publisher struct {
	JS       jetstream.JetStream
	Topology bus.Topology
	// Timeout bounds each publish; DefaultTimeout when zero.
	Timeout time.Duration
}

// Status publishes s on the status subject of s.StoreId with the id
// lifecycle.StatusEventID(store, observed generation, phase, reason), per
// lease (lifecycle.AttemptID). It
// runs on a fresh context bounded by Timeout that keeps ctx's values but
// not its cancellation, so the last word of a cancelled reconcile is
// still written. It returns once JetStream stored the event; an error
// means the event may not be stored and the caller should retry.
//
// Fencing: when ctx carries a store lease (lease.Keep), the event carries
// its token, and nothing is published once the lease's fence has closed
// (lease.ErrLost).
func (p *Publisher) Status(ctx context.Context, s *eventsv1.StoreStatusChanged) error {
	token, err := fence(ctx)
	if err != nil {
		return err
	}
	s.LeaseToken = token
	id := lifecycle.AttemptID(lifecycle.StatusEventID(s.GetStoreId(), s.GetObservedGeneration(), s.GetPhase(), lifecycle.Reason(s.GetReason())), token)
	return p.publish(ctx, p.Topology.StatusSubject(s.GetStoreId()), id, s)
}

// Audit publishes e on the audit subject of its store with the message id
// lifecycle.AttemptID(e.Id, lease token), with the same fresh-context
// and fencing rules and errors as Status.
func (p *Publisher) Audit(ctx context.Context, e *auditv1.AuditEntry) error {
	if e.GetId() == "" {
		return fmt.Errorf("audit entry for store %s has no id: use lifecycle.AuditEventID", e.GetStoreId())
	}
	token, err := fence(ctx)
	if err != nil {
		return err
	}
	// One entry per attempt: the same fact under a later lease (a second
	// failure of a generation, a command taken over) is recorded again.
	msgID := lifecycle.AttemptID(e.GetId(), token)
	return p.publish(ctx, p.Topology.AuditSubject(bus.RoleOrchestrator, e.GetStoreId()), msgID, &eventsv1.AuditEvent{Entry: e, LeaseToken: token})
}

// fence returns the token of the lease ctx carries (0 for none), or
// lease.ErrLost when its fence has closed.
func fence(ctx context.Context) (uint64, error) {
	l := lease.FromContext(ctx)
	if l == nil {
		return 0, nil
	}
	if err := l.Valid(); err != nil {
		return 0, err
	}
	return l.Token(), nil
}

// publish publishes m as phase.Publish, whose span the message carries.
func (p *Publisher) publish(ctx context.Context, subject, id string, m proto.Message) (err error) {
	ctx, t := phase.Start(ctx, phase.Publish, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		semconv.MessagingSystemKey.String("nats"), semconv.MessagingDestinationName(subject), semconv.MessagingMessageID(id),
		attribute.String("storeprov.message_type", bus.MessageType(m))))
	defer func() { t.End(err) }()
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	return bus.Publish(pubCtx, p.JS, subject, id, m)
}
