// Package bridge connects package htlcgate.dev/sdk/go/outcome, which holds the
// world's optional `outcome` export, to package htlcgate, which decodes it and
// calls the Decider; so that neither needs public API for the other. Plugins
// do not use it (it is internal).
package bridge

// Outcome runs the world's `outcome` on its 16 flat canonical-ABI parameters
// (each in a uint64); set by package htlcgate when built for wasip1.
var Outcome func(flat *[16]uint64)

// OutcomeExported is true when package outcome is linked in, i.e. the module
// exports `outcome`.
var OutcomeExported bool
