//go:build chaos

package tests

import "time"

// The long cluster test of `make chaos`: at least 10,000 events over at
// least a minute.
var clusterLoadSettings = clusterLoad{events: 10000, duration: 60 * time.Second, rate: 150}
