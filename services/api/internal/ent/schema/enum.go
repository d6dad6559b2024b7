package schema

import (
	"database/sql"
	"database/sql/driver"

	"entgo.io/ent/schema/field"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// protoEnum is a protobuf enum type, such as storev1.Phase.
type protoEnum interface {
	~int32
	protoreflect.Enum
	String() string
}

// protoEnumByName stores a protobuf enum in a text column by its value's
// name (PHASE_READY), as the api always has, so that existing databases
// read as before. A number the enum does not name is written as its
// decimal digits, and a name it does not know reads as the enum's zero
// value (UNSPECIFIED), as the api's string conversions did.
func protoEnumByName[E protoEnum]() field.ValueScannerFunc[E, *sql.NullString] {
	return field.ValueScannerFunc[E, *sql.NullString]{
		V: func(e E) (driver.Value, error) { return e.String(), nil },
		S: func(s *sql.NullString) (E, error) {
			var zero E
			if !s.Valid {
				return zero, nil
			}
			v := zero.Descriptor().Values().ByName(protoreflect.Name(s.String))
			if v == nil {
				return zero, nil
			}
			return E(v.Number()), nil
		},
	}
}
