package schema

import "embed"

// Migrations are the versioned SQL migrations that build this schema in the
// api's database, laid out as database.DB.Migrate expects
// (migrations/<dialect>/NNNN_name.sql). A change to the schema needs a new
// migration for each dialect; TestMigrationsMatchSchema fails until it has
// one.
//
//go:embed migrations
var Migrations embed.FS
