// Package outcome makes a Go plugin's module export the world's optional
// `outcome` function, so that htlcgate tells the plugin's Decider how the HTLCs
// it decided went on (see htlcgate.OutcomeObserver). Import it for that side
// effect, in the plugin's main package:
//
//	import _ "htlcgate.dev/sdk/go/outcome"
//
// Without it the module does not export `outcome` and htlcgate never calls the
// plugin for outcomes. With it, each LND event about an HTLC is one call: the
// Decider's Outcome method if it has one, nothing otherwise.
package outcome

import "htlcgate.dev/sdk/go/internal/bridge"

func init() { bridge.OutcomeExported = true }
