//go:build unix

package runner

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/events"
)

// benchOrder is a Shopify-like order of about 1 KiB.
func benchOrder(i int) []byte {
	var items []string
	for k := range 4 {
		items = append(items, fmt.Sprintf(`{"id":%d,"sku":"SKU-%04d","title":"Organic cotton t-shirt, size M","quantity":%d,"price":"19.90","vendor":"Acme","taxable":true}`, 1000+k, k, k+1))
	}
	return fmt.Appendf(nil, `{"id":%d,"name":"#%d","email":"buyer%d@example.com","currency":"EUR","total_price":"199.00","created_at":"2026-12-07T10:00:00+01:00",`+
		`"shipping_address":{"first_name":"Jon","last_name":"Snow","address1":"Unter den Linden 1","city":"Berlin","zip":"10117","country_code":"DE"},`+
		`"line_items":[%s],"note":"leave at the door"}`, 820982911946154508+i, 1000+i, i, strings.Join(items, ","))
}

// benchMarketplace is the marketplace mapping of the fixture tests.
const benchMarketplace = `{
  external_id: (.id | tostring), reference: .name,
  buyer: {email: .email, name: (.shipping_address.first_name + " " + .shipping_address.last_name)},
  ship_to: {city: .shipping_address.city, postal_code: .shipping_address.zip, country: .shipping_address.country_code},
  items: [.line_items[] | {sku, qty: .quantity, unit_price: {amount: .price, currency: "EUR"}}],
  total: {amount: .total_price, currency: .currency}
}`

func publishOrders(b *testing.B, js jetstream.JetStream, n int, prefix string) {
	b.Helper()
	for i := range n {
		m, err := events.Event{ID: fmt.Sprintf("%s-%d", prefix, i), Type: "order.created", ContentType: "application/json", Data: benchOrder(i)}.Msg(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishes not acknowledged")
	}
}

// BenchmarkDeliveryThroughputMapping is BenchmarkDeliveryThroughput with
// 1 KiB JSON orders, without (off) and with (on) a filter that keeps every
// order and the marketplace transformation with a path and a header
// template: the ratio of the two deliveries/s is the mapping's cost.
func BenchmarkDeliveryThroughputMapping(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			ns, js := newBenchNATS(b)
			p := newBenchPartner(b, b.N)
			d := benchDestination(p.URL)
			if on {
				d.Filter = `data.shipping_address.country_code in ["DE", "FR", "NL"] && type == "order.created"`
				d.Transform.JQ = benchMarketplace
				d.Transform.Path = "/orders/{{ .body.external_id }}"
				d.Transform.Headers = map[string]string{"X-Order-Ref": "{{ .data.name }}"}
			}
			startBenchDispatcher(b, ns, d)
			b.StopTimer()
			ctx := context.Background()
			if _, err := js.PauseConsumer(ctx, "EVENTS", ConsumerName(d.Name), time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
			publishOrders(b, js, b.N, "map")
			b.StartTimer()
			start, cpu0 := time.Now(), cpuTime()
			if _, err := js.ResumeConsumer(ctx, "EVENTS", ConsumerName(d.Name)); err != nil {
				b.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(10 * time.Minute):
				b.Fatalf("delivered %d of %d", p.n.Load(), b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
			// The process's CPU per delivery (dispatcher, embedded NATS
			// server, partner): what the machine's other load does not
			// inflate, so the ratio of the two runs is the mapping's cost.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/delivery")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
