package htlcgate

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
// counted, not written (they still cost fuel). Outside wasip1 (tests on the
// build machine) lines go to stderr.
func Log(level Level, message string) { hostLog(level, message) }

// Debug writes a fine-grained detail line.
func Debug(message string) { hostLog(LevelDebug, message) }

// Info writes a normal-operation line.
func Info(message string) { hostLog(LevelInfo, message) }

// Warn writes a line about something unexpected.
func Warn(message string) { hostLog(LevelWarn, message) }

// Error writes a line about something that failed.
func Error(message string) { hostLog(LevelError, message) }

// NowUnixMs is wall-clock time from the host: milliseconds since the Unix
// epoch.
func NowUnixMs() uint64 { return hostNow() }
