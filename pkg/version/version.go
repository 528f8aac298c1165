// Package version names the Switchyard build: in logs, in the User-Agent of
// deliveries, and in `switchyard version`.
package version

import (
	"runtime/debug"
	"sync"
)

// Version is set at build time with
// -ldflags "-X github.com/switchyard/switchyard/pkg/version.Version=v1.2.3";
// otherwise it is the main module's version, or "dev".
var Version = ""

// String returns the version of this build. It is called for every
// outbound request (the User-Agent), so the build information is read
// once: debug.ReadBuildInfo parses it anew on each call, 3.5% of the
// dispatcher's CPU in the delivery benchmark when it was read each time.
func String() string {
	if Version != "" {
		return Version
	}
	return fromBuildInfo()
}

var fromBuildInfo = sync.OnceValue(func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
})
