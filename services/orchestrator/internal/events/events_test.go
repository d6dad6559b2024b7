package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/storeprov/storeprov/gen/storeprov/audit/v1"
	eventsv1 "github.com/storeprov/storeprov/gen/storeprov/events/v1"
	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/bus"
	"github.com/storeprov/storeprov/pkg/bus/bustest"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/services/orchestrator/internal/events"
)

func TestStatusIsWrittenEvenWhenTheWorkWasCancelled(t *testing.T) {
	bustest.Each(t, func(t *testing.T, env *bustest.Env) {
		_, js := env.ConnectAs(t, bus.RoleOrchestrator)
		p := &events.Publisher{JS: js, Topology: env.Topology}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s := &eventsv1.StoreStatusChanged{StoreId: "s1", Phase: storev1.Phase_PHASE_FAILED, Reason: string(lifecycle.ReasonTimeout),
			ObservedGeneration: 3, Time: timestamppb.Now()}
		if err := p.Status(ctx, s); err != nil {
			t.Fatalf("Status with a cancelled context: %v", err)
		}
		// The same change again (a retry, another worker) is stored once.
		if err := p.Status(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		e := &auditv1.AuditEntry{Id: lifecycle.AuditEventID("s1", 3, lifecycle.ActionFailure), Action: lifecycle.ActionFailure, StoreId: "s1"}
		for range 2 {
			if err := p.Audit(ctx, e); err != nil {
				t.Fatalf("Audit with a cancelled context: %v", err)
			}
		}

		status := stored(t, env, env.Topology.StatusSubject("s1"))
		var got eventsv1.StoreStatusChanged
		if err := proto.Unmarshal(status.Data, &got); err != nil {
			t.Fatal(err)
		}
		if lifecycle.Reason(got.GetReason()) != lifecycle.ReasonTimeout || got.GetObservedGeneration() != 3 {
			t.Errorf("stored status = %v", &got)
		}
		if id, want := status.Header.Get("Nats-Msg-Id"), lifecycle.StatusEventID("s1", 3, storev1.Phase_PHASE_FAILED, lifecycle.ReasonTimeout); id != want {
			t.Errorf("status Nats-Msg-Id = %q, want %q", id, want)
		}
		stored(t, env, env.Topology.AuditSubject(bus.RoleOrchestrator, "s1"))
	})
}

func TestAuditWithoutIDIsRefused(t *testing.T) {
	p := &events.Publisher{}
	if err := p.Audit(context.Background(), &auditv1.AuditEntry{StoreId: "s1"}); err == nil {
		t.Fatal("Audit of an entry without id succeeded; it could never be deduplicated")
	}
}

// stored checks that the subject holds exactly one message and returns it.
func stored(t *testing.T, env *bustest.Env, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := env.JS.Stream(ctx, env.Topology.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[subject]; n != 1 {
		t.Fatalf("%s holds %d messages, want 1", subject, n)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
