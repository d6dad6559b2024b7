package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// User is someone who calls the API with a token, issued by CreateToken or,
// for users of an OpenID Connect issuer, by signing in.
type User struct{ ent.Schema }

// Fields of User.
func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").Unique().NotEmpty().MaxLen(63).Immutable(),
		field.Bool("admin").Default(false),
		field.Int32("store_quota").Default(5),
		field.Time("create_time").Default(time.Now).Immutable(),
		// The OpenID Connect identity the user signs in with, as
		// "<issuer>#<subject>"; unset for users who only have API tokens.
		field.String("oidc_identity").Optional().Nillable().Unique().Immutable(),
	}
}

// Edges of User.
func (User) Edges() []ent.Edge {
	return []ent.Edge{edge.To("tokens", Token.Type)}
}
