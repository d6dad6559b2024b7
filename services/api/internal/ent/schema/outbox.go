package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Outbox holds messages written in the same transaction as the change
// they announce, until the relay has published them.
type Outbox struct{ ent.Schema }

// Fields of Outbox.
func (Outbox) Fields() []ent.Field {
	return []ent.Field{
		field.Int64("id").Immutable(),
		field.String("subject").NotEmpty().Immutable(),
		// Nats-Msg-Id: JetStream drops a second publish with the same id.
		field.String("msg_id").NotEmpty().Immutable(),
		field.Bytes("payload").Immutable(),
		// Fully-qualified protobuf message name of payload.
		field.String("message_type").NotEmpty().Immutable(),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("sent_time").Optional().Nillable(),
		// W3C trace context (traceparent, tracestate) of the span that
		// wrote the row, so that the relay's publish continues the
		// request's trace; empty when it was written outside any trace.
		field.JSON("trace_context", map[string]string{}).Optional().Immutable(),
	}
}

// Indexes of Outbox.
func (Outbox) Indexes() []ent.Index {
	return []ent.Index{index.Fields("sent_time", "id")}
}
