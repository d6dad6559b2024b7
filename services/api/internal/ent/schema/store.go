package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/lifecycle"
	"github.com/storeprov/storeprov/pkg/storeid"
)

// Store is the desired and last observed state of one store.
type Store struct{ ent.Schema }

// Fields of Store.
func (Store) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").NotEmpty().MaxLen(storeid.MaxLen).Immutable(),
		field.String("display_name").NotEmpty().MaxLen(63),
		// Stored by name (ENGINE_WOOCOMMERCE), as the api always has.
		field.String("engine").GoType(storev1.Engine(0)).ValueScanner(protoEnumByName[storev1.Engine]()),
		field.String("owner").NotEmpty().Immutable(),
		// Stored by name (PHASE_READY), as the api always has.
		field.String("phase").GoType(storev1.Phase(0)).ValueScanner(protoEnumByName[storev1.Phase]()),
		field.String("failure_reason").GoType(lifecycle.Reason("")).Default(""),
		field.String("failure_message").Default(""),
		field.String("url").Default(""),
		// Chart version the store's Helm release runs, as last reported.
		field.String("chart_version").Default(""),
		// Desired chart version set by the latest upgrade, resolved when it
		// was accepted. Empty for a store never upgraded (or upgraded
		// without a version by an older api), whose commands carry
		// chart_version, the version it runs.
		field.String("desired_chart_version").Default(""),
		// Desired Helm value overrides by dotted path, set by the latest
		// upgrade; sent with every provisioning command.
		field.JSON("chart_values", map[string]string{}).Optional(),
		// Audit action of the request that set the latest generation:
		// create, retry, upgrade or delete.
		field.String("last_action").Default(""),
		field.Int64("generation").Default(1),
		field.Int64("observed_generation").Default(0),
		// Time of the newest status event applied; older ones are ignored.
		field.Time("status_time").Optional().Nillable(),
		// Lease token of the newest status event applied: an event made
		// under an older lease of the store (a fenced-out worker's) is
		// ignored.
		field.Uint64("lease_token").Default(0),
		// When the store's order check last passed, as the newest status
		// event that carried the time said; kept when later events carry
		// none (a release without a check).
		field.Time("order_check_time").Optional().Nillable(),
		// Idempotency key of the CreateStore request that created the
		// store, if it had one; unique per owner (cleared when reused after
		// RequestIDWindow).
		field.String("request_id").Optional().Nillable().MaxLen(128),
		field.Time("create_time").Default(time.Now).Immutable(),
		field.Time("update_time").Default(time.Now).UpdateDefault(time.Now),
	}
}

// Indexes of Store.
func (Store) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("owner", "phase"),
		index.Fields("create_time", "id"),
		index.Fields("owner", "request_id").Unique(),
	}
}
