package htlcgate

import "testing"

func TestScidsFormatAndParseBothForms(t *testing.T) {
	s, ok := ScidFromParts(800_000, 1, 0)
	if !ok || uint64(s) != 879_609_302_220_865_536 || s.String() != "800000x1x0" {
		t.Fatalf("%d %s", s, s)
	}
	if NodeAddressed.String() != "16777215x16777215x65535" || FinalHop.String() != "0x0x0" {
		t.Fatal("edge ids")
	}
	for text, want := range map[string]Scid{"800000x1x0": s, "879609302220865536": s, "18446744073709551615": NodeAddressed} {
		got, err := ParseScid(text)
		if err != nil || got != want {
			t.Fatalf("%s: %v %v", text, got, err)
		}
	}
	for text, want := range map[string]string{
		"":                     "empty channel id",
		"12xab":                "a BLOCKxTXxOUT id has exactly three parts",
		"1x2xa":                "each part of BLOCKxTXxOUT must be a decimal number",
		"16777216x0x0":         "block height does not fit in 3 bytes (max 16777215)",
		"0x0x65536":            "output index does not fit in 2 bytes (max 65535)",
		"18446744073709551616": "decimal channel id larger than 2^64 - 1",
		" 1":                   "neither BLOCKxTXxOUT nor a decimal channel id",
	} {
		if _, err := ParseScid(text); err == nil || err.Error() != want {
			t.Fatalf("%q: %v, want %q", text, err, want)
		}
	}
}

func TestConfigReadersNameTheKeyAndTheValue(t *testing.T) {
	c := NewConfig("max", " 5 ", "big", "18446744073709551616", "deny", "1x2x3, 42,", "flag", "yes")
	if v, err := c.Uint64("max"); err != nil || v != 5 {
		t.Fatalf("%d %v", v, err)
	}
	if _, err := c.Uint64("big"); err == nil || err.Error() != "config key `big`: expected an unsigned integer up to 18446744073709551615, got `18446744073709551616`" {
		t.Fatal(err)
	}
	if _, err := c.Uint64("none"); err == nil {
		t.Fatal("missing required key accepted")
	}
	if ids, err := c.Scids("deny"); err != nil || len(ids) != 2 || ids[1] != 42 {
		t.Fatalf("%v %v", ids, err)
	}
	if _, err := c.BoolOr("flag", false); err == nil {
		t.Fatal("yes accepted as a bool")
	}
	if err := c.DenyUnknown("max", "big", "deny"); err == nil || err.Error() != "config key `flag` is not known; known keys: max, big, deny" {
		t.Fatal(err)
	}
}
