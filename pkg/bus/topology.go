// Package bus declares, in one place, every NATS JetStream stream, subject,
// consumer and key-value bucket the services use, creates them
// idempotently, and carries protobuf messages over them.
//
// Three streams exist:
//
//	<P>_COMMANDS  work queue of users' ProvisionCommands on
//	              <p>.commands.<store>, consumed by every orchestrator
//	              replica through one durable pull consumer.
//	<P>_RESYNC    work queue of the periodic resync's commands on
//	              <p>.resync.<store>, with a consumer of its own, so that
//	              maintenance never queues in front of a user's command.
//	<P>_EVENTS    StoreStatusChanged on <p>.status.<store> and AuditEvent
//	              on <p>.audit.<publisher>.<store>, consumed by the api and
//	              the audit service through durable consumers of their own.
//
// and two key-value buckets the orchestrators keep: <P>_LEASES, whose
// keys live for the lease TTL unless renewed (the server expires them, so
// no host's clock is trusted), and <P>_APPLIED, the last command applied
// to each store. The prefix <p> lets several installations (and tests)
// share one NATS server.
//
// Each service connects as a Role (api, orchestrator, audit) with
// Credentials of its own and may use only Topology.Permissions(role): the
// embedded server (RunEmbedded) and the platform chart's NATS grant exactly
// that, so a compromised service cannot issue, forge or drop another
// service's messages.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Topology names the streams, subjects, consumers and buckets of one
// installation.
type Topology struct {
	// Prefix is a lowercase word, "storeprov" by default.
	Prefix string
	// Replicas of each stream and bucket: 1 for a single server, 3 for a
	// production cluster.
	Replicas int
}

// Default is the topology of a storeprov installation.
func Default() Topology { return Topology{Prefix: "storeprov", Replicas: 1} }

func (t Topology) upper() string { return strings.ToUpper(t.Prefix) }

// CommandsStream is the work-queue stream of provisioning commands.
func (t Topology) CommandsStream() string { return t.upper() + "_COMMANDS" }

// EventsStream holds status changes and audit events.
func (t Topology) EventsStream() string { return t.upper() + "_EVENTS" }

// ResyncStream is the work-queue stream of resync commands.
func (t Topology) ResyncStream() string { return t.upper() + "_RESYNC" }

// LeaseBucket is the key-value bucket of per-store leases.
func (t Topology) LeaseBucket() string { return t.upper() + "_LEASES" }

// AppliedBucket is the key-value bucket of the command last applied to
// each store.
func (t Topology) AppliedBucket() string { return t.upper() + "_APPLIED" }

// CommandSubject is where the command for a store is published.
func (t Topology) CommandSubject(storeID string) string { return t.Prefix + ".commands." + storeID }

// ResyncSubject is where the periodic resync queues its command for a
// store.
func (t Topology) ResyncSubject(storeID string) string { return t.Prefix + ".resync." + storeID }

// StatusSubject is where status changes of a store are published.
func (t Topology) StatusSubject(storeID string) string { return t.Prefix + ".status." + storeID }

// AuditSubject is where publisher (the api or the orchestrator) publishes
// audit events about a store: <p>.audit.<publisher>.<store>. Each may
// publish only under its own name, so the audit service knows who said
// what (AuditPublisher) and takes a store's owner from the api alone.
func (t Topology) AuditSubject(publisher Role, storeID string) string {
	return t.auditSubjects(publisher) + "." + storeID
}

// auditSubjects is the parent of publisher's audit subjects.
func (t Topology) auditSubjects(publisher Role) string {
	return t.Prefix + ".audit." + string(publisher)
}

// AuditPublisher returns the role whose audit subject subject is, or ""
// when it is none of them.
func (t Topology) AuditPublisher(subject string) Role {
	rest, ok := strings.CutPrefix(subject, t.Prefix+".audit.")
	if !ok {
		return ""
	}
	publisher, _, _ := strings.Cut(rest, ".")
	for _, r := range Roles() {
		if string(r) == publisher {
			return r
		}
	}
	return ""
}

// StoreChangedSubject is where an api replica tells the others that it
// changed a store, so that their WatchStores streams send it too. It is
// plain NATS, outside every stream: a change missed while disconnected is
// made good by the watchers' new snapshot.
func (t Topology) StoreChangedSubject(storeID string) string { return t.Prefix + ".changed." + storeID }

// Durable consumer names.
const (
	// OrchestratorConsumer is shared by every orchestrator replica.
	OrchestratorConsumer = "orchestrator"
	// ResyncConsumer is the orchestrators' consumer of resync commands.
	ResyncConsumer = "orchestrator-resync"
	// APIStatusConsumer feeds status changes to the api.
	APIStatusConsumer = "api-status"
	// AuditConsumer feeds audit events to the audit service.
	AuditConsumer = "audit"
)

// Delivery limits of the orchestrator's consumer.
const (
	// CommandAckWait is how long a worker may hold a command without a
	// heartbeat (InProgress) before it is redelivered to another worker.
	CommandAckWait = 30 * time.Second
	// CommandMaxDeliver bounds redeliveries; after that the command is
	// dropped and the store stays FAILED until retried. Workers space
	// redeliveries themselves with NakWithDelay: a consumer BackOff would
	// also replace AckWait by its first step.
	CommandMaxDeliver = 8
)

// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id.
const DuplicateWindow = 10 * time.Minute

// Options tune Ensure.
type Options struct {
	// MaxAckPending bounds the commands in flight across all orchestrator
	// replicas. Zero keeps the value of an existing consumer (64 for a new
	// one), so services other than the orchestrator never change it.
	MaxAckPending int
	// LeaseTTL is how long a store's lease lives without renewal: the
	// lease bucket's TTL. Zero keeps an existing bucket's (DefaultLeaseTTL
	// for a new one). Only the orchestrator sets it.
	LeaseTTL time.Duration
}

// DefaultLeaseTTL is the lease bucket's TTL when none is set.
const DefaultLeaseTTL = 30 * time.Second

// Ensure makes what role uses exist, idempotently; each service calls it
// at start for its own role, with the rights Permissions gives that role:
//
//	orchestrator  creates or updates every stream, its two consumers and
//	              both buckets: it owns the layout, so a new release's
//	              settings (replicas, limits, lease TTL) take effect on
//	              its rollout.
//	api           creates the streams it publishes to when absent,
//	              creates or updates APIStatusConsumer.
//	audit         creates the events stream when absent, creates or
//	              updates AuditConsumer.
//
// Only the orchestrator may update a stream: changing a stream's limits
// drops the messages it holds, as a purge would. Creating a stream that
// exists changes nothing, so the api and the audit service may start
// before the orchestrator without that right. An unknown role is an error.
func (t Topology) Ensure(ctx context.Context, js jetstream.JetStream, role Role, opts Options) error {
	if t.Prefix == "" || strings.ContainsAny(t.Prefix, ". *>") || strings.ToLower(t.Prefix) != t.Prefix {
		return fmt.Errorf("bus prefix %q must be a lowercase word without dots or spaces", t.Prefix)
	}
	u, ok := t.uses(role)
	if !ok {
		return fmt.Errorf("unknown bus role %q: want one of %v", role, Roles())
	}
	for _, name := range u.streams {
		cfg := t.streamConfig(name)
		var err error
		if u.ownsLayout {
			_, err = js.CreateOrUpdateStream(ctx, cfg)
		} else if _, err = js.CreateStream(ctx, cfg); errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("cannot ensure stream %s as %s: %w", name, role, err)
		}
	}
	for _, c := range u.consumers {
		cfg := c.config
		if role == RoleOrchestrator {
			cfg.MaxAckPending = opts.MaxAckPending
			if cfg.MaxAckPending <= 0 {
				cfg.MaxAckPending = 64
				if existing, err := js.Consumer(ctx, c.stream, cfg.Durable); err == nil {
					cfg.MaxAckPending = existing.CachedInfo().Config.MaxAckPending
				}
			}
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, c.stream, cfg); err != nil {
			return fmt.Errorf("cannot ensure consumer %s on %s as %s: %w", cfg.Durable, c.stream, role, err)
		}
	}
	if u.buckets {
		ttl := opts.LeaseTTL
		if ttl <= 0 {
			ttl = DefaultLeaseTTL
			if existing, err := js.KeyValue(ctx, t.LeaseBucket()); err == nil {
				if st, err := existing.Status(ctx); err == nil && st.TTL() > 0 {
					ttl = st.TTL()
				}
			}
		}
		for _, kv := range []jetstream.KeyValueConfig{t.leaseBucketConfig(ttl), t.appliedBucketConfig()} {
			if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
				return fmt.Errorf("cannot ensure bucket %s as %s: %w", kv.Bucket, role, err)
			}
		}
	}
	return nil
}

// Remove deletes the topology's streams and buckets, with every message
// and key they hold, for a test or benchmark that used its own prefix on
// a shared server. What is already gone is not an error.
func (t Topology) Remove(ctx context.Context, js jetstream.JetStream) error {
	var errs []error
	for _, name := range []string{t.CommandsStream(), t.ResyncStream(), t.EventsStream()} {
		if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			errs = append(errs, fmt.Errorf("cannot delete stream %s: %w", name, err))
		}
	}
	for _, name := range []string{t.LeaseBucket(), t.AppliedBucket()} {
		if err := js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			errs = append(errs, fmt.Errorf("cannot delete bucket %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// streamConfig is the configuration of the stream named name.
func (t Topology) streamConfig(name string) jetstream.StreamConfig {
	replicas := max(t.Replicas, 1)
	workQueue := func(description, subjects string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: description,
			Subjects:    []string{subjects},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		}
	}
	switch name {
	case t.CommandsStream():
		return workQueue("Provisioning commands for orchestrator workers", t.Prefix+".commands.>")
	case t.ResyncStream():
		// One resync waits per store: a newer one replaces it, so the
		// queue never outgrows the fleet when a resync round takes longer
		// than the interval.
		cfg := workQueue("Resync commands for orchestrator workers, apart from users' commands", t.Prefix+".resync.>")
		cfg.MaxMsgsPerSubject, cfg.Discard = 1, jetstream.DiscardOld
		return cfg
	}
	return jetstream.StreamConfig{
		Name:        t.EventsStream(),
		Description: "Store status changes and audit events",
		Subjects:    []string{t.Prefix + ".status.>", t.Prefix + ".audit.>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      7 * 24 * time.Hour,
		Storage:     jetstream.FileStorage,
		Duplicates:  DuplicateWindow,
		Replicas:    replicas,
	}
}

// leaseBucketConfig is the configuration of the lease bucket: a key the
// holder does not renew within ttl is removed by the server.
func (t Topology) leaseBucketConfig(ttl time.Duration) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.LeaseBucket(),
		Description: "Per-store leases fencing orchestrator work; a key lives for the TTL unless renewed",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.FileStorage,
		Replicas:    max(t.Replicas, 1),
	}
}

// appliedBucketConfig is the configuration of the bucket of applied
// commands.
func (t Topology) appliedBucketConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      t.AppliedBucket(),
		Description: "The command last applied to each store",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(t.Replicas, 1),
	}
}
