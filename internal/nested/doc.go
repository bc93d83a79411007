// Package nested has no code: its test runs the tests of the repository's
// nested modules, so that go test ./... at the root, which stops at module
// boundaries, tests everything.
//
// The root module holds what users import and requires only fx, zap and
// the OpenTelemetry metric API. The tests against other libraries
// (internal/thirdparty) and the example (example) are modules of their
// own, joined to the root by go.work and by replace directives, so that
// their dependencies never reach an importer's module graph.
package nested
