package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Token is a bearer token, stored as the SHA-256 of its secret: an API token
// from CreateToken, or a session token from an OpenID Connect sign-in, which
// is revoked when its session signs out. Both expire. Its id is public: it
// names the token in listings and revocations, and proves nothing.
type Token struct{ ent.Schema }

// Fields of Token.
func (Token) Fields() []ent.Field {
	return []ent.Field{
		field.String("hash").Unique().NotEmpty().Immutable().Sensitive(),
		field.String("description").Default(""),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Enum("kind").Values("api", "session").Default("api").Immutable(),
		// When the token stops being accepted. Unset only on API tokens
		// issued before tokens expired: they expire at create_time plus the
		// api's --token-max-ttl.
		field.Time("expire_time").Optional().Nillable().Immutable(),
		// When the token last authenticated a call, to the minute: it is
		// written at most once a minute per token.
		field.Time("last_use_time").Optional().Nillable(),
	}
}

// Edges of Token.
func (Token) Edges() []ent.Edge {
	return []ent.Edge{edge.From("user", User.Type).Ref("tokens").Unique().Required()}
}
