package htlcgate

import (
	"errors"

	"htlcgate.dev/sdk/go/internal/bridge"
)

// Decider decides HTLCs. It is built once by the init function given to
// Register and then asked about each HTLC, one at a time.
type Decider interface {
	// Decide answers for one HTLC. Next passes it to the next plugin; any other
	// Verdict ends the chain and goes to LND once the host has checked it.
	Decide(h *Htlc) Verdict
}

// DeciderFunc makes a plain function a Decider (for stateless policies).
type DeciderFunc func(h *Htlc) Verdict

// Decide calls f.
func (f DeciderFunc) Decide(h *Htlc) Verdict { return f(h) }

// InitFunc builds the Decider from the plugin's config table. An error refuses
// the load; its message is shown to the operator, so name the key and what is
// wrong (the Config readers do).
type InitFunc func(cfg Config) (Decider, error)

// registered is the plugin's init function; current the Decider it built.
var (
	registered InitFunc
	current    Decider
)

// decideCalls counts the Decide calls; deciding is the number of the one in
// progress (0 between calls). Each Htlc remembers its call (Htlc.call), so that
// OnionBlob asks the host, which answers for the HTLC being decided, only
// during that call.
var decideCalls, deciding uint64

// Register makes init the plugin's init function. Call it once, from a package
// init function (a Go plugin's main is never run).
func Register(init InitFunc) {
	registered = init
}

// runInit is the exported init: builds the Decider, or refuses.
func runInit(cfg Config) error {
	// A refused (re-)init must not leave an old Decider answering.
	current = nil
	if registered == nil {
		return errors.New("the plugin registered no init function: call htlcgate.Register from a Go init function (main is never run in a plugin)")
	}
	d, err := registered(cfg)
	if err != nil {
		return err
	}
	if d == nil {
		return errors.New("the plugin's init function returned neither a Decider nor an error")
	}
	if _, observes := d.(OutcomeObserver); observes && !bridge.OutcomeExported {
		return errors.New("the Decider has an Outcome method, but the module does not export `outcome`, so it would never be called: add `import _ \"htlcgate.dev/sdk/go/outcome\"` to the plugin's main package")
	}
	current = d
	return nil
}

// runDecide is the exported decide: asks the Decider, or answers Next.
func runDecide(h *Htlc) Verdict {
	if current == nil {
		// `next` has no effect of its own: the chain goes on exactly as if this
		// plugin were absent, which cannot lose an HTLC.
		Error("decide called before a successful init; answering `next`")
		return Next()
	}
	decideCalls++
	h.call, deciding = decideCalls, decideCalls
	v := current.Decide(h)
	deciding = 0
	return v
}

// runOutcome is the exported outcome: tells the Decider, if it observes.
func runOutcome(o *Outcome) {
	if obs, ok := current.(OutcomeObserver); ok {
		obs.Outcome(o)
	}
}
