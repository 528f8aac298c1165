// Package version names the Switchyard build: in logs, in the User-Agent of
// deliveries, and in `switchyard version`.
package version

import "runtime/debug"

// Version is set at build time with
// -ldflags "-X github.com/switchyard/switchyard/pkg/version.Version=v1.2.3";
// otherwise it is the main module's version, or "dev".
var Version = ""

// String returns the version of this build.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
