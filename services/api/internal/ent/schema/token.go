package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Token is an API token, stored as the SHA-256 of its secret.
type Token struct{ ent.Schema }

// Fields of Token.
func (Token) Fields() []ent.Field {
	return []ent.Field{
		field.String("hash").Unique().NotEmpty().Immutable().Sensitive(),
		field.String("description").Default(""),
		field.Time("create_time").Default(time.Now).Immutable(),
	}
}

// Edges of Token.
func (Token) Edges() []ent.Edge {
	return []ent.Edge{edge.From("user", User.Type).Ref("tokens").Unique().Required()}
}
