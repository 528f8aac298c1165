package silences_test

import (
	"fmt"

	"github.com/switchyard/switchyard/pkg/silences"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// A silence for the ERP's partner alerts during its maintenance.
func ExampleMatches() {
	var ms []*switchyardv1.SilenceMatcher
	for _, s := range []string{"destination=erp", "rule=~Partner.*"} {
		m, err := silences.ParseMatcher(s)
		if err != nil {
			fmt.Println(err)
			return
		}
		ms = append(ms, m)
	}
	sil := &switchyardv1.Silence{Matchers: ms}
	fmt.Println(silences.Matches(sil, map[string]string{"rule": "PartnerDown", "destination": "erp"}))
	fmt.Println(silences.Matches(sil, map[string]string{"rule": "DeliveryDeadLettered", "destination": "erp"}))
	fmt.Println(silences.Matches(sil, map[string]string{"rule": "PartnerDown", "destination": "crm"}))
	// Output:
	// true
	// false
	// false
}

func ExampleParseMatcher() {
	_, err := silences.ParseMatcher("dest=erp")
	fmt.Println(err)
	// Output:
	// invalid silence: matcher label "dest": must be one of rule, destination, source, severity
}
