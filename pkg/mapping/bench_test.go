//go:build unix

package mapping_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/mapping"
)

// order is a Shopify-like order of about size bytes (line items added until
// it is).
func order(size int) []byte {
	head := `{"id":820982911946154508,"name":"#1001","email":"jon@example.com","currency":"EUR","total_price":"199.00",` +
		`"shipping_address":{"first_name":"Jon","last_name":"Snow","city":"Berlin","zip":"10115","country_code":"DE"},"line_items":[`
	var b strings.Builder
	b.WriteString(head)
	for i := 0; b.Len() < size-120; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%05d","title":"Organic cotton t-shirt","quantity":%d,"price":"19.90"}`, i, i%5+1)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkMapping is the cost per event of the filter and the marketplace
// transformation (body, a path and a header template) at 1 KiB and 64 KiB:
// parsing the body once, the CEL filter, the gojq program, encoding.
func BenchmarkMapping(b *testing.B) {
	m, err := mapping.Compile(mapping.Spec{
		Filter:    `data.shipping_address.country_code in ["DE", "FR", "NL"] && type == "orders/create"`,
		Transform: marketplace,
		Path:      "/orders/{{ .body.external_id }}",
		Headers:   map[string]string{"X-Order-Ref": "{{ .data.name }}"},
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 64 << 10} {
		body := order(size)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			ctx := context.Background()
			cpu0 := cpuTime()
			for b.Loop() {
				in := mapping.NewInput(mapping.Event{Type: "orders/create", Source: "shop", Body: body})
				keep, err := m.Filter(ctx, in)
				if err != nil || !keep {
					b.Fatal(keep, err)
				}
				if _, err := m.Apply(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time is what the machine's other load does not inflate.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

const marketplace = `{
  external_id: (.id | tostring), reference: .name,
  buyer: {email: .email, name: (.shipping_address.first_name + " " + .shipping_address.last_name)},
  ship_to: {city: .shipping_address.city, postal_code: .shipping_address.zip, country: .shipping_address.country_code},
  items: [.line_items[] | {sku, qty: .quantity, unit_price: {amount: .price, currency: "EUR"}}],
  total: {amount: .total_price, currency: .currency}
}`

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
