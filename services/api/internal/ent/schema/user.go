package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// User is someone who calls the API with a token.
type User struct{ ent.Schema }

// Fields of User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").Unique().NotEmpty().MaxLen(63).Immutable(),
		field.Bool("admin").Default(false),
		field.Int32("store_quota").Default(5),
		field.Time("create_time").Default(time.Now).Immutable(),
	}
}

// Edges of User.
func (User) Edges() []ent.Edge {
	return []ent.Edge{edge.To("tokens", Token.Type)}
}
