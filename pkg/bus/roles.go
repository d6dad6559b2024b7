package bus

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Role is a service that connects to NATS; each role signs in as its own
// user and may do only what Permissions lists.
type Role string

// The roles of an installation.
const (
	RoleAPI          Role = "api"
	RoleOrchestrator Role = "orchestrator"
	RoleAudit        Role = "audit"
)

// Roles lists every role, the orchestrator (which owns the layout) first.
func Roles() []Role { return []Role{RoleOrchestrator, RoleAPI, RoleAudit} }

// Permissions are the subjects a user may publish to and subscribe to.
// Each list is an allow list: NATS refuses every other subject. Two empty
// lists mean no restriction at all to NATS, so they are never a role's.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// roleUse is what a role does on the bus. Ensure creates what it lists and
// Permissions grants exactly that, so the two cannot disagree.
type roleUse struct {
	// publishes are the subjects the role publishes messages to, through
	// JetStream or plain NATS.
	publishes []string
	// subscribes are its plain NATS subscriptions, besides its inbox.
	subscribes []string
	// streams are created when absent, or created and updated when the
	// role owns the layout.
	streams    []string
	ownsLayout bool
	// consumers are the durable pull consumers the role reads from.
	consumers []consumerUse
	// lastMessages are streams whose last message on a subject the role
	// reads (STREAM.INFO to bind the stream, STREAM.MSG.GET).
	lastMessages []string
	// buckets: the role reads and writes the lease and applied buckets.
	buckets bool
}

// consumerUse is a durable pull consumer on a stream.
type consumerUse struct {
	stream string
	config jetstream.ConsumerConfig
}

// uses returns what role does; false for an unknown role.
func (t Topology) uses(role Role) (roleUse, bool) {
	switch role {
	case RoleOrchestrator:
		return roleUse{
			// Commands: a worker requeues a command it could not finish
			// on its last delivery (worker outcomeRequeued).
			publishes:  []string{t.Prefix + ".commands.>", t.Prefix + ".resync.>", t.Prefix + ".status.>", t.auditSubjects(RoleOrchestrator) + ".>"},
			streams:    []string{t.CommandsStream(), t.ResyncStream(), t.EventsStream()},
			ownsLayout: true,
			consumers: []consumerUse{
				{t.CommandsStream(), jetstream.ConsumerConfig{
					Durable:     OrchestratorConsumer,
					Description: "Users' commands, shared by every orchestrator replica",
					AckPolicy:   jetstream.AckExplicitPolicy,
					AckWait:     CommandAckWait,
					MaxDeliver:  CommandMaxDeliver,
				}},
				{t.ResyncStream(), jetstream.ConsumerConfig{
					Durable:     ResyncConsumer,
					Description: "Resync commands, shared by every orchestrator replica",
					AckPolicy:   jetstream.AckExplicitPolicy,
					AckWait:     CommandAckWait,
					MaxDeliver:  CommandMaxDeliver,
				}},
			},
			// A worker reads the newest command of the store it works on,
			// to stop as soon as a newer one supersedes its own.
			lastMessages: []string{t.CommandsStream()},
			buckets:      true,
		}, true
	case RoleAPI:
		return roleUse{
			// Commands and audit events through its outbox, resync
			// commands; store changes to the other api replicas.
			publishes:  []string{t.Prefix + ".commands.>", t.Prefix + ".resync.>", t.auditSubjects(RoleAPI) + ".>", t.Prefix + ".changed.>"},
			subscribes: []string{t.Prefix + ".changed.>"},
			streams:    []string{t.CommandsStream(), t.ResyncStream(), t.EventsStream()},
			consumers: []consumerUse{{t.EventsStream(), jetstream.ConsumerConfig{
				Durable:       APIStatusConsumer,
				Description:   "Status changes applied to the api's stores",
				FilterSubject: t.Prefix + ".status.>",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       30 * time.Second,
				MaxAckPending: 256,
			}}},
		}, true
	case RoleAudit:
		return roleUse{
			streams: []string{t.EventsStream()},
			consumers: []consumerUse{{t.EventsStream(), jetstream.ConsumerConfig{
				Durable:       AuditConsumer,
				Description:   "Audit events recorded by the audit service",
				FilterSubject: t.Prefix + ".audit.>",
				AckPolicy:     jetstream.AckExplicitPolicy,
				AckWait:       30 * time.Second,
				MaxAckPending: 256,
			}}},
		}, true
	}
	return roleUse{}, false
}

// InboxPrefix is where role receives replies (JetStream acks and API
// responses, pulled messages). Each role has its own, and may subscribe
// to no other, so one service cannot read another's replies.
func (t Topology) InboxPrefix(role Role) string { return "_INBOX_" + t.Prefix + "_" + string(role) }

// jsAPI prefixes the JetStream API subjects.
const jsAPI = "$JS.API."

// Permissions returns what role may publish and subscribe to: the
// subjects of its messages, the JetStream API requests of Ensure and of
// its consumer, and its inbox. Nothing else: no role may delete or purge
// a stream, delete a message, list streams, or reach another role's
// consumer; only the orchestrator may update a stream, read a stream's last
// message or touch the lease and applied buckets. An unknown role gets two empty lists, which NATS reads as no
// restriction: validate roles first, as RunEmbedded does.
//
// The right to create or update its own consumer lets a role point it
// at a deliver subject (a push consumer); the server then republishes
// the consumer's messages there, which could be another stream's subject.
// Those messages keep their Storeprov-Message-Type, so the consuming
// service drops them as the wrong type (bus.Decode).
func (t Topology) Permissions(role Role) Permissions {
	u, ok := t.uses(role)
	if !ok {
		return Permissions{}
	}
	pub := append([]string(nil), u.publishes...)
	for _, s := range u.streams {
		pub = append(pub, jsAPI+"STREAM.CREATE."+s)
		if u.ownsLayout {
			pub = append(pub, jsAPI+"STREAM.UPDATE."+s)
		}
	}
	for _, s := range u.lastMessages {
		pub = append(pub, jsAPI+"STREAM.INFO."+s, jsAPI+"STREAM.MSG.GET."+s)
	}
	if u.buckets {
		pub = append(pub, jsAPI+"INFO") // CreateOrUpdateKeyValue checks the account first
		for _, bucket := range []string{t.LeaseBucket(), t.AppliedBucket()} {
			kv := "KV_" + bucket
			pub = append(pub,
				"$KV."+bucket+".>",
				jsAPI+"STREAM.CREATE."+kv,
				jsAPI+"STREAM.UPDATE."+kv,
				jsAPI+"STREAM.INFO."+kv,
				jsAPI+"DIRECT.GET."+kv+".>",
			)
		}
	}
	for _, c := range u.consumers {
		stream, name := c.stream, c.config.Durable
		create := jsAPI + "CONSUMER.CREATE." + stream + "." + name
		if f := c.config.FilterSubject; f != "" {
			// The server checks that the subject's filter is the config's,
			// so the role cannot widen its consumer to other subjects.
			create += "." + f
		}
		pub = append(pub,
			create,
			jsAPI+"CONSUMER.INFO."+stream+"."+name,
			jsAPI+"CONSUMER.MSG.NEXT."+stream+"."+name,
			// Acks, naks and progress: $JS.ACK.<stream>.<consumer>.… and, in
			// the server's newer format, $JS.ACK.<domain>.<account>.<stream>.<consumer>.…
			"$JS.ACK."+stream+"."+name+".>",
			"$JS.ACK.*.*."+stream+"."+name+".>",
		)
	}
	sub := append(append([]string(nil), u.subscribes...), t.InboxPrefix(role)+".>")
	return Permissions{Publish: pub, Subscribe: sub}
}
