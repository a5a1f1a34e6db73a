package cost

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ica-governance/ica"
)

// FuzzParseQueryResponse feeds arbitrary answers to the parser: it must not
// panic, and what it accepts must be well-formed (UTC-midnight days, finite
// bounded amounts, known resource types after aggregation).
func FuzzParseQueryResponse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(cmAnswer("https://management.azure.com/next", []any{1.5, 20230301, "Storage", "USD"})))
	f.Add([]byte(`{"properties":{"columns":[{"name":"UsageDate"},{"name":"ServiceName"},{"name":"Cost"}],"rows":[["2023-03-01T00:00:00",null,"1e3"]]}}`))
	f.Add([]byte(`{"properties":{"columns":[{"name":"cost"},{"name":"usagedate"},{"name":"servicename"}],"rows":[[1,2.0230301e7,"x"],[1]]}}`))
	f.Add([]byte(`{"properties":null}`))
	f.Add([]byte(``))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseQueryResponse(data)
		if err != nil {
			return
		}
		for _, r := range p.rows {
			if !r.date.Equal(day(r.date)) || r.date.Location().String() != "UTC" {
				t.Fatalf("date %v is not UTC midnight", r.date)
			}
			if math.IsNaN(r.cost) || math.IsInf(r.cost, 0) || math.Abs(r.cost) > ica.MaxCostUSD {
				t.Fatalf("cost %v out of range", r.cost)
			}
		}
		costs, err := aggregate(cmSub, p.rows)
		if err != nil {
			return
		}
		for _, c := range costs {
			switch c.ResourceType {
			case ica.ResourceAKS, ica.ResourceACR, ica.ResourceBlob, ica.ResourceOther:
			default:
				t.Fatalf("resource type %q", c.ResourceType)
			}
			if math.IsNaN(c.CostUSD) || math.IsInf(c.CostUSD, 0) {
				t.Fatalf("sum %v", c.CostUSD)
			}
		}
	})
}
