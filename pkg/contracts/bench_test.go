package contracts_test

import (
	"fmt"
	"strings"
	"testing"

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
			for b.Loop() {
				_ = set.Validate(contracts.Source("shop"), "orders/create", "application/json", body)
			}
		})
	}
}
