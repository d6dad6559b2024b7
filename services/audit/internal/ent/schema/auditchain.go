package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/field"
)

// AuditChain holds, in its one row (id 1), the state of the audit log's
// hash chain. Appends lock this row, so entries join the chain one at a
// time, in the order they commit.
type AuditChain struct {
	ent.Schema
}

// Fields of AuditChain.
func (AuditChain) Fields() []ent.Field {
	return []ent.Field{
		field.String("head_hash").Default("").
			Comment("Hash of the newest entry; empty while the chain is empty."),
		field.Int("head_sequence").Default(0).
			Comment("Id of the newest entry; 0 while the chain is empty."),
		field.String("checkpoint_hash").Default("").
			Comment("Hash of the last entry retention deleted: the prev_hash of the first kept entry. Empty when nothing was deleted."),
		field.Int("checkpoint_sequence").Default(0).
			Comment("Id of the last entry retention deleted; 0 when nothing was deleted."),
	}
}
