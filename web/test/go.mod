// This directory holds the Node tooling of the browser tests. The go.mod
// makes it a module of its own, so that `go test ./...` and `go vet ./...`
// from the repository root never walk into node_modules.
module coursestream/web/test

go 1.26
