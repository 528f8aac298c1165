//go:build !chaos

package tests

import "time"

// The short cluster test of `make test`: a few hundred events.
var clusterLoadSettings = clusterLoad{events: 300, duration: 20 * time.Second, rate: 8}
