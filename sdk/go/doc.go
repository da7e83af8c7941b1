// Package htlcgate writes htlcgate policy plugins in Go.
//
// htlcgate holds LND's HTLC interceptor stream and asks a chain of sandboxed
// WebAssembly components what to do with each forwarded HTLC. A plugin is one
// such component (world `decider` of wit/plugin.wit, htlcgate:plugin@0.2.0).
// This package holds the hand-written canonical-ABI glue for that world, so a
// plugin is plain Go:
//
//	package main
//
//	import htlcgate "htlcgate.dev/sdk/go"
//
//	type minFee struct{ minFeeMsat uint64 }
//
//	func (p *minFee) Decide(h *htlcgate.Htlc) htlcgate.Verdict {
//		if h.IsFinalHop() || h.FeeMsat() >= int64(p.minFeeMsat) {
//			return htlcgate.Next() // no opinion: later plugins decide
//		}
//		return htlcgate.FailTemporary()
//	}
//
//	func init() {
//		htlcgate.Register(func(cfg htlcgate.Config) (htlcgate.Decider, error) {
//			if err := cfg.DenyUnknown("min_fee_msat"); err != nil {
//				return nil, err
//			}
//			min, err := cfg.Uint64Or("min_fee_msat", 0)
//			return &minFee{minFeeMsat: min}, err
//		})
//	}
//
//	func main() {} // required by Go, never called in a plugin
//
// Build it as a WASI reactor and turn it into a component:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.core.wasm .
//	htlcgate componentize plugin.core.wasm -o plugin.wasm
//
// # How a plugin lives
//
//   - Register must be called from a package init function: a c-shared Go
//     module never runs main. Instantiating the component starts the Go runtime
//     and runs the init functions; then htlcgate calls the registered init
//     function once with the plugin's config table.
//   - Decide runs for each HTLC, one at a time, on the same instance, so a
//     Decider may keep state in its fields. It is limited by fuel, wall-clock
//     time and memory. A panic traps the instance and htlcgate replaces it
//     (running init again), so state is best-effort.
//   - Next means "no opinion": the following plugin decides. Hold(ms) keeps
//     the HTLC held and asks this plugin again later, with Htlc.Attempt one
//     higher. Any other Verdict ends the chain.
//   - KVGet, KVSet and KVDelete keep state in the plugin's own namespace
//     (grant `kv`); Channel describes a channel of this node (grant `node`);
//     BlockHeight needs no grant.
//   - A Decider that is also an OutcomeObserver hears how its HTLCs went on,
//     when the plugin imports htlcgate.dev/sdk/go/outcome (which makes the
//     module export the world's optional `outcome`).
//   - Goroutines only run while a call is in progress, and a call must not
//     block waiting for one (the runtime aborts with "all goroutines are
//     asleep").
//
// # Testing on the host
//
// Everything except the host imports is plain Go that also builds for the
// build machine: build HTLCs with NewForward, configs with NewConfig, call your
// Decide and compare Verdicts with ==-like Equal. Outside wasip1, logging goes
// to stderr, Htlc.OnionBlob returns what the test set, the kv store is a map,
// Channel and BlockHeight answer what SetChannelForTest and
// SetBlockHeightForTest set, and ResetHostForTest forgets it all.
package htlcgate
