package contracts_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
)

// order returns a valid order of about size bytes.
func order(size int) []byte {
	var items []string
	body := func() string {
		return `{"id": 1001, "email": "buyer@example.com", "total_price": "99.00", "line_items": [` + strings.Join(items, ",") + `]}`
	}
	for i := 0; len(body()) < size; i++ {
		items = append(items, fmt.Sprintf(`{"sku": "SKU-%05d", "quantity": %d, "price": "12.50"}`, i, i%5+1))
	}
	return []byte(body())
}

// BenchmarkValidate is the cost of checking one event against its schema
// (parsing included), at 1 KiB and 64 KiB: what a contract adds to each
// accepted webhook (docs/measurements.md).
func BenchmarkValidate(b *testing.B) {
	set, err := contracts.Compile(config.Config{
		Sources: []config.Source{{Name: "shop", Scheme: "shopify", Contract: &config.Contract{Default: orderSchema}}},
	}.WithDefaults())
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 64 << 10} {
		body := order(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			if v := set.Validate(contracts.Source("shop"), "orders/create", "application/json", body); v != nil {
				b.Fatalf("the benchmark's order is invalid: %v", v)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				_ = set.Validate(contracts.Source("shop"), "orders/create", "application/json", body)
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// cpuTime is the process's CPU time so far (garbage collection included):
// on a shared machine the wall time per operation depends on the
// neighbours, the CPU time does not.
func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
