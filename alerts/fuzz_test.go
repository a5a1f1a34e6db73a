package alerts

import (
	"testing"

	"github.com/ica-governance/ica"
)

// FuzzParse checks that no input makes Parse panic, that every failure is an
// *ica.Error a handler can answer with, and that every success is an alert
// the rest of ICA can use. Seeds: every testdata payload plus edge cases.
func FuzzParse(f *testing.F) {
	for _, name := range allTestdata(f) {
		f.Add(MustRead(f, name))
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `"x"`, `{"schemaId":null}`, `{"schemaId":"azureMonitorCommonAlertSchema","data":"{}"}`,
		`{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":"{\"alertId\":1}"}}`,
		`{"schemaId":"azureMonitorCommonAlertSchema","data":{"essentials":{"alertId":"a","severity":"2","monitorCondition":"fired","firedDateTime":0,"alertTargetIDs":"['/subscriptions/x/resourceGroups/y']"}}}`,
		`{"AlertRuleName":"r","Severity":"Warning","SearchIntervalEndtimeUtc":"1/2/2006 3:04:05 PM"}`,
		`{"status":"Activated","context":{"id":"x","timestamp":"2021-11-15T09:35:12Z"}}`,
		`{"schemaId":"Microsoft.Insights/activityLogs","data":{"context":{"activityLog":{"eventDataId":"e","submissionTimestamp":"2021-11-15T09:35:12Z"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := Parse(body)
		if err != nil {
			if a != nil {
				t.Fatal("alert and error")
			}
			switch ica.ErrorCode(err) {
			case ica.EINVALID, ica.ETOOLARGE:
			default:
				t.Fatalf("error code %q: %v", ica.ErrorCode(err), err)
			}
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("parsed alert does not validate: %v", err)
		}
		if a.Schema == "" {
			t.Fatal("no schema")
		}
		// What Parse returns must be safe to route and page on.
		(&RoutingConfig{}).Route(a)
		ev := TriggerEvent("", a, "")
		if _, err := NewEventMessage(ev, "1"); err != nil {
			t.Fatalf("trigger for a parsed alert is invalid: %v (%s)", err, ev)
		}
	})
}
