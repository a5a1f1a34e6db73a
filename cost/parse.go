package cost

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Column names ICA reads, matched case-insensitively. The cost column is
// named after the aggregation ("Cost" for ActualCost, which ICA asks for;
// "PreTaxCost" in older and Usage answers; "CostUSD" when asked in USD;
// "totalCost" if a service answers with the alias); the first present wins.
var (
	costColumns     = []string{"Cost", "PreTaxCost", "CostUSD", "totalCost"}
	dateColumns     = []string{"UsageDate"}
	serviceColumns  = []string{"ServiceName"}
	currencyColumns = []string{"Currency", "BillingCurrency"}
)

// queryRow is one row of an answer, decoded.
type queryRow struct {
	date     time.Time
	service  string
	cost     float64
	currency string
}

// queryPage is one page of an answer.
type queryPage struct {
	rows     []queryRow
	nextLink string
}

// queryResponse is the shape of a Query API answer (see
// fixtures/azure-cost-management): columns name the cells of each row.
type queryResponse struct {
	Properties *struct {
		NextLink *string `json:"nextLink"`
		Columns  []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
		Rows [][]json.RawMessage `json:"rows"`
	} `json:"properties"`
}

// parseQueryResponse decodes one page. Columns are found by name, wherever
// they are; extra columns are ignored. An empty body (204) is an empty page.
func parseQueryResponse(data []byte) (*queryPage, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &queryPage{}, nil
	}
	var r queryResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode cost management answer: %w", err)
	}
	if r.Properties == nil {
		return nil, fmt.Errorf("cost management answer has no properties")
	}
	p := &queryPage{}
	if r.Properties.NextLink != nil {
		p.nextLink = strings.TrimSpace(*r.Properties.NextLink)
	}
	if len(r.Properties.Columns) == 0 && len(r.Properties.Rows) == 0 {
		return p, nil
	}
	names := make([]string, len(r.Properties.Columns))
	for i, c := range r.Properties.Columns {
		names[i] = c.Name
	}
	find := func(want []string) int {
		for _, w := range want {
			for i, n := range names {
				if strings.EqualFold(n, w) {
					return i
				}
			}
		}
		return -1
	}
	iCost, iDate, iService, iCurrency := find(costColumns), find(dateColumns), find(serviceColumns), find(currencyColumns)
	var missing []string
	if iCost < 0 {
		missing = append(missing, "a cost column ("+strings.Join(costColumns, ", ")+")")
	}
	if iDate < 0 {
		missing = append(missing, "UsageDate (is the granularity Daily?)")
	}
	if iService < 0 {
		missing = append(missing, "ServiceName (is the answer grouped by ServiceName?)")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("cost management answer lacks %s; columns are [%s]",
			strings.Join(missing, " and "), truncate(strings.Join(names, ", "), 300))
	}
	usd := strings.EqualFold(names[iCost], "CostUSD")

	p.rows = make([]queryRow, 0, len(r.Properties.Rows))
	for n, cells := range r.Properties.Rows {
		if len(cells) < len(names) {
			return nil, fmt.Errorf("row %d has %d cells for %d columns", n, len(cells), len(names))
		}
		var row queryRow
		var err error
		if row.cost, err = parseCost(cells[iCost]); err != nil {
			return nil, fmt.Errorf("row %d: %s: %w", n, names[iCost], err)
		}
		if row.date, err = parseUsageDate(cells[iDate]); err != nil {
			return nil, fmt.Errorf("row %d: UsageDate: %w", n, err)
		}
		if row.service, err = parseString(cells[iService]); err != nil {
			return nil, fmt.Errorf("row %d: ServiceName: %w", n, err)
		}
		if usd {
			row.currency = "USD"
		} else if iCurrency >= 0 {
			if row.currency, err = parseString(cells[iCurrency]); err != nil {
				return nil, fmt.Errorf("row %d: %s: %w", n, names[iCurrency], err)
			}
			row.currency = strings.ToUpper(strings.TrimSpace(row.currency))
		}
		p.rows = append(p.rows, row)
	}
	return p, nil
}

// parseCost reads a cost cell: a JSON number (or a numeric string), finite
// and within ica.MaxCostUSD either way. Negative amounts are credits and
// refunds, and are kept.
func parseCost(raw json.RawMessage) (float64, error) {
	var v float64
	var s string
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return 0, fmt.Errorf("null is not a number")
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		if json.Unmarshal(raw, &s) != nil {
			return 0, fmt.Errorf("%s is not a number", truncate(string(raw), 40))
		}
		if v, err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
			return 0, fmt.Errorf("%q is not a number", truncate(s, 40))
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > ica.MaxCostUSD {
		return 0, fmt.Errorf("%s is out of range", truncate(string(raw), 40))
	}
	return v, nil
}

// parseUsageDate reads a UsageDate cell: a Number like 20230301 (what the
// API documents) or a string "20230301", "2023-03-01",
// "2023-03-01T00:00:00" or RFC 3339. The result is UTC midnight.
func parseUsageDate(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return time.Time{}, fmt.Errorf("%s is neither a number nor a string", truncate(string(raw), 40))
		}
		f, err := n.Float64()
		if err != nil || f != math.Trunc(f) || f < 10000101 || f > 99991231 {
			return time.Time{}, fmt.Errorf("%s is not a date YYYYMMDD", truncate(n.String(), 40))
		}
		s = strconv.FormatInt(int64(f), 10)
	}
	s = strings.TrimSpace(s)
	for _, layout := range []string{"20060102", time.DateOnly, "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return day(t), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date", truncate(s, 40))
}

// parseString reads a string cell; null is "".
func parseString(raw json.RawMessage) (string, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", truncate(string(raw), 40))
	}
	return s, nil
}

// aggregate folds rows into one DailyCost per (day, resource type), summing
// amounts, and sorts them by day, then resource type. Rows of one day and
// type in different currencies cannot be summed and are an error.
func aggregate(scope string, rows []queryRow) ([]DailyCost, error) {
	type key struct {
		date time.Time
		typ  string
	}
	sums := make(map[key]*DailyCost)
	services := make(map[key]map[string]bool)
	for _, r := range rows {
		k := key{r.date, ResourceTypeOf(r.service)}
		dc := sums[k]
		if dc == nil {
			dc = &DailyCost{Scope: scope, Date: r.date, ResourceType: k.typ, Currency: r.currency}
			sums[k] = dc
			services[k] = make(map[string]bool)
		}
		if r.currency != "" && dc.Currency != "" && r.currency != dc.Currency {
			return nil, fmt.Errorf("cost management answer for %s mixes currencies %s and %s on %s",
				scope, dc.Currency, truncate(r.currency, 10), r.date.Format(time.DateOnly))
		}
		if dc.Currency == "" {
			dc.Currency = r.currency
		}
		dc.CostUSD += r.cost
		if s := strings.TrimSpace(r.service); s != "" {
			services[k][s] = true
		}
	}
	out := make([]DailyCost, 0, len(sums))
	for k, dc := range sums {
		names := make([]string, 0, len(services[k]))
		for s := range services[k] {
			names = append(names, s)
		}
		sort.Strings(names)
		dc.Service = strings.Join(names, "; ")
		out = append(out, *dc)
	}
	sortCosts(out)
	return out, nil
}

func sortCosts(cs []DailyCost) {
	sort.Slice(cs, func(i, j int) bool {
		if !cs[i].Date.Equal(cs[j].Date) {
			return cs[i].Date.Before(cs[j].Date)
		}
		return cs[i].ResourceType < cs[j].ResourceType
	})
}
