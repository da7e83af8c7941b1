// Command go-spin-forever is a fault fixture: its Decide never returns.
//
// Tests load it to prove that a Go plugin stuck in a loop is stopped by the
// host (fuel or wall-clock deadline) exactly like the Rust spin-forever, and
// that the HTLC still gets an answer. Not a policy: do not put it in a real
// chain. Config: none.
package main

import htlcgate "htlcgate.dev/sdk/go"

// spins is global so that the loop has an effect the compiler must keep.
var spins uint64

type spinForever struct{}

// Decide loops until the host stops it.
func (spinForever) Decide(*htlcgate.Htlc) htlcgate.Verdict {
	for {
		spins++
	}
}

func init() {
	htlcgate.Register(func(cfg htlcgate.Config) (htlcgate.Decider, error) {
		if err := cfg.DenyUnknown(); err != nil {
			return nil, err
		}
		return spinForever{}, nil
	})
}

// main is required by Go and never called: a plugin is a reactor.
func main() {}
