//go:build !wasip1

package htlcgate

import (
	"os"
	"time"
)

// Outside WebAssembly (unit tests on the build machine) the host imports are
// stand-ins: log lines go to stderr, the clock is the system's, and there is no
// onion blob unless a test sets one with SetOnionBlobForTest.

var levelNames = [...]string{"DEBUG", "INFO", "WARN", "ERROR"}

func hostLog(level Level, message string) {
	name := "LOG"
	if int(level) < len(levelNames) {
		name = levelNames[level]
	}
	os.Stderr.WriteString("[plugin " + name + "] " + message + "\n")
}

func hostNow() uint64 { return uint64(time.Now().UnixMilli()) }

func hostOnionBlob() []byte { return []byte{} }
