package htlcgate

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// Config is the config table of the plugin's [[plugin]] entry, as key/value
// strings (numbers and booleans arrive as their text). The readers return
// errors that name the key, the expected form and the value, ready to return
// from the init function: the operator sees them when the load is refused.
type Config struct {
	// pairs in the host's order (sorted by key).
	pairs [][2]string
}

// NewConfig builds a Config from key, value, key, value... for tests.
// It panics on an odd number of strings.
func NewConfig(keyValues ...string) Config {
	if len(keyValues)%2 != 0 {
		panic("htlcgate.NewConfig: odd number of strings (want key, value pairs)")
	}
	c := Config{}
	for i := 0; i < len(keyValues); i += 2 {
		c.pairs = append(c.pairs, [2]string{keyValues[i], keyValues[i+1]})
	}
	return c
}

// Get is the value of key and whether it is set.
func (c Config) Get(key string) (string, bool) {
	for _, p := range c.pairs {
		if p[0] == key {
			return p[1], true
		}
	}
	return "", false
}

// Has reports whether key is set.
func (c Config) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// Keys lists the keys in the host's order.
func (c Config) Keys() []string {
	keys := make([]string, len(c.pairs))
	for i, p := range c.pairs {
		keys[i] = p[0]
	}
	return keys
}

// StringOr is the value of key, or def when it is not set.
func (c Config) StringOr(key, def string) string {
	if v, ok := c.Get(key); ok {
		return v
	}
	return def
}

// Uint64Or parses key (whitespace trimmed) as an unsigned decimal integer, or
// returns def when it is not set.
func (c Config) Uint64Or(key string, def uint64) (uint64, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	return parseUint(key, strings.TrimSpace(v))
}

// Uint64 is Uint64Or for a key that must be set.
func (c Config) Uint64(key string) (uint64, error) {
	v, ok := c.Get(key)
	if !ok {
		return 0, errors.New("config key `" + key + "` is required: set it to an unsigned integer")
	}
	return parseUint(key, strings.TrimSpace(v))
}

// BoolOr parses key as true or false, or returns def when it is not set.
func (c Config) BoolOr(key string, def bool) (bool, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	switch strings.TrimSpace(v) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New("config key `" + key + "`: expected `true` or `false`, got `" + v + "`")
}

// Scids parses key as a comma-separated list of channel ids (BLOCKxTXxOUT or
// decimal; entries trimmed, empty ones skipped); nil when it is not set.
func (c Config) Scids(key string) ([]Scid, error) {
	v, ok := c.Get(key)
	if !ok {
		return nil, nil
	}
	out := []Scid{}
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		scid, err := ParseScid(entry)
		if err != nil {
			return nil, errors.New("config key `" + key + "`: expected a channel id (BLOCKxTXxOUT or decimal), got `" + entry + "` (" + err.Error() + ")")
		}
		out = append(out, scid)
	}
	return out, nil
}

// Hex decodes key as hex bytes; nil when it is not set.
func (c Config) Hex(key string) ([]byte, error) {
	v, ok := c.Get(key)
	if !ok {
		return nil, nil
	}
	b, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, errors.New("config key `" + key + "`: expected hex bytes (an even number of 0-9a-f digits), got `" + v + "`")
	}
	return b, nil
}

// DenyUnknown refuses keys outside known, so that a misspelt key is an error
// instead of a silently ignored setting.
func (c Config) DenyUnknown(known ...string) error {
	for _, p := range c.pairs {
		found := false
		for _, k := range known {
			if p[0] == k {
				found = true
				break
			}
		}
		if found {
			continue
		}
		if len(known) == 0 {
			return errors.New("config key `" + p[0] + "` is not known: this plugin takes no config")
		}
		return errors.New("config key `" + p[0] + "` is not known; known keys: " + strings.Join(known, ", "))
	}
	return nil
}

func parseUint(key, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil && allDigits(v) {
		return n, nil
	}
	if allDigits(v) {
		return 0, errors.New("config key `" + key + "`: expected an unsigned integer up to 18446744073709551615, got `" + v + "`")
	}
	return 0, errors.New("config key `" + key + "`: expected an unsigned integer, got `" + v + "`")
}
