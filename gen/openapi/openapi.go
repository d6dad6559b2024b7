// Package openapi serves the REST API's description: one OpenAPI v2 document
// that protoc-gen-openapiv2 merges from every service in proto/ when
// `make generate` runs.
package openapi

import _ "embed"

// Document is the OpenAPI v2 (Swagger) JSON document of the REST gateway,
// covering StoreService and AuditService. Field names are lowerCamelCase, as
// the gateway's default protojson marshaler writes them. Callers must not
// modify the slice: it is shared by every reader.
//
//go:embed storeprov.swagger.json
var Document []byte
