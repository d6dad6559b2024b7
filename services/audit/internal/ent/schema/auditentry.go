// Package schema declares the audit log's tables for ent.
package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AuditEntry is one recorded action on a store. Rows are only ever
// inserted (and, past the retention, deleted oldest first): every field is
// immutable. The auto-increment id is the entry's sequence in the hash
// chain, in the order entries were committed; it also orders entries
// recorded at the same time and completes the paging keyset (time, id).
type AuditEntry struct {
	ent.Schema
}

// Fields of AuditEntry.
func (AuditEntry) Fields() []ent.Field {
	return []ent.Field{
		field.String("event_id").
			Immutable().NotEmpty().
			Comment("Id of the event that produced the entry; a redelivered event is recorded once per lease token."),
		field.Uint64("lease_token").Immutable().Default(0).
			Comment("Fencing token of the orchestrator's lease the event was made under (0 from the api): each attempt is an entry of its own."),
		field.String("action").Immutable().
			Comment("What happened: create, delete, retry, ready, failure, deleted."),
		field.String("actor").Immutable().
			Comment("User who caused it, or the platform's own actor."),
		field.String("store_id").Immutable(),
		field.String("store_owner").Immutable().
			Comment("Owner of the store; users who are not admins see only their own stores."),
		field.Time("time").Immutable().
			Comment("When it happened, in UTC with microsecond precision."),
		field.Text("detail").Immutable().Default(""),
		field.Time("recorded_at").Immutable().
			Comment("When the audit service stored it."),
		field.String("prev_hash").Immutable().Default("").
			Comment("Hash of the entry before it in the chain; empty for the first entry ever."),
		field.String("hash").Immutable().Default("").
			Comment("Hex SHA-256 of prev_hash and of the entry's content (see package store's hashEntry)."),
	}
}

// Indexes of AuditEntry: one per filter of ListAuditEntries, each ending
// with time so that the filtered rows come out in order.
func (AuditEntry) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("event_id", "lease_token").Unique(),
		index.Fields("store_id", "time"),
		index.Fields("actor", "time"),
		index.Fields("action", "time"),
		index.Fields("store_owner", "time"),
		index.Fields("time"),
	}
}
