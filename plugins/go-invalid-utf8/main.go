// Command go-invalid-utf8 is a fixture: its Decide logs text that is not valid
// UTF-8 (a Go string may hold any bytes) and resumes; with config `refuse`
// set, its init refuses with such text.
//
// The world's strings must be UTF-8: tests load it to prove that the SDK
// repairs the text (invalid bytes become U+FFFD) rather than letting the host
// reject it, which would turn a log call into a plugin fault. Not a policy.
// Config: refuse (optional, any value).
package main

import (
	"errors"

	htlcgate "htlcgate.dev/sdk/go"
)

type logsBadText struct{}

// Decide logs invalid UTF-8 and resumes.
func (logsBadText) Decide(*htlcgate.Htlc) htlcgate.Verdict {
	htlcgate.Info("bytes \xff\xfe\xc3 end")
	return htlcgate.Resume()
}

func init() {
	htlcgate.Register(func(cfg htlcgate.Config) (htlcgate.Decider, error) {
		if err := cfg.DenyUnknown("refuse"); err != nil {
			return nil, err
		}
		if cfg.Has("refuse") {
			return nil, errors.New("refused \xff here")
		}
		return logsBadText{}, nil
	})
}

// main is required by Go and never called: a plugin is a reactor.
func main() {}
