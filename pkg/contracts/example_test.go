package contracts_test

import (
	"fmt"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
)

// A source's contract names a schema per event type; a payload that
// breaks it gets violations with JSON pointers.
func Example() {
	cfg := config.Config{Sources: []config.Source{{
		Name: "shop", Scheme: "shopify",
		Contract: &config.Contract{Schemas: map[string]string{"orders/create": "testdata/order.schema.json"}},
	}}}.WithDefaults()
	set, err := contracts.Compile(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	body := []byte(`{"id": 1001, "line_items": [{"sku": "A-1", "quantity": 0}]}`)
	for _, v := range set.Validate(contracts.Source("shop"), "orders/create", "application/json", body) {
		fmt.Println(v)
	}
	// Output:
	// /: missing property 'email'
	// /line_items/0/quantity: minimum: got 0, want 1
}
