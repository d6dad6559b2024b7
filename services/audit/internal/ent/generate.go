// Package ent is the generated ent client of the audit log. Only schema/
// is written by hand; run `go generate ./internal/ent` after changing it,
// then update the migrations in internal/store/migrations to match (a test
// fails until they do).
package ent

//go:generate go run entgo.io/ent/cmd/ent generate --feature sql/upsert,sql/lock,sql/execquery ./schema
