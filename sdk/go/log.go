package htlcgate

import (
	"strings"
	"unicode/utf8"
)

// Level is the severity of a log line.
type Level uint8

const (
	// LevelDebug is fine-grained detail.
	LevelDebug Level = iota
	// LevelInfo is normal operation.
	LevelInfo
	// LevelWarn is something unexpected the operator may want to see.
	LevelWarn
	// LevelError is something that failed.
	LevelError
)

// Log writes message into htlcgate's log at level, tagged with the plugin's
// name by the host. The host rate-limits each plugin: lines beyond its limit are
// counted, not written (they still cost fuel). A message that is not valid
// UTF-8 (a Go string may hold any bytes) is written with each run of invalid
// bytes replaced by U+FFFD: the world's strings are UTF-8, and the host would
// otherwise fault the plugin. Outside wasip1 (tests on the build machine)
// lines go to stderr.
func Log(level Level, message string) { hostLog(level, validText(message)) }

// Debug writes a fine-grained detail line (see Log).
func Debug(message string) { Log(LevelDebug, message) }

// Info writes a normal-operation line (see Log).
func Info(message string) { Log(LevelInfo, message) }

// Warn writes a line about something unexpected (see Log).
func Warn(message string) { Log(LevelWarn, message) }

// Error writes a line about something that failed (see Log).
func Error(message string) { Log(LevelError, message) }

// validText is s as valid UTF-8, each run of invalid bytes replaced by U+FFFD
// (s itself when it is valid). Every string the module hands the host goes
// through it: the host checks the world's strings and faults the plugin on one
// that is not UTF-8.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// NowUnixMs is wall-clock time from the host: milliseconds since the Unix
// epoch.
func NowUnixMs() uint64 { return hostNow() }
