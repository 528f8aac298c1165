package jsonexpr_test

import (
	"context"
	"fmt"

	"github.com/switchyard/switchyard/pkg/jsonexpr"
)

// A polled source's answer, its items by JSON path and each item's id by a
// gojq expression.
func Example() {
	doc, err := jsonexpr.Decode([]byte(`{"data": {"orders": [{"id": 1001, "status": "paid"}, {"id": 1002, "status": "draft"}]}}`))
	if err != nil {
		panic(err)
	}
	items, _ := jsonexpr.Compile("$.data.orders[*]")
	id, _ := jsonexpr.Compile(`"\(.id)-\(.status)"`)
	all, _ := items.All(context.Background(), doc)
	for _, it := range all {
		v, _, _ := id.First(context.Background(), it)
		text, _ := jsonexpr.Text(v)
		fmt.Println(text)
	}
	// Output:
	// 1001-paid
	// 1002-draft
}
