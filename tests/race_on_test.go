//go:build race

package tests

// raceEnabled: the test binary runs under the race detector.
const raceEnabled = true
