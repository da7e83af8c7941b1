// The htlcgate plugin SDK for Go. Standard library only.
//
// The module path is a name, not a download location: a plugin's go.mod points
// it at this directory with a replace directive (see README.md).
module htlcgate.dev/sdk/go

go 1.24
