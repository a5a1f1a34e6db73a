package policy

import (
	"encoding/json"
	"fmt"
	"sort"
)

// Diff lists what changed from old to new, one line per setting, named the
// way ica.yaml spells it: "approval.targets.production.windows: [...] → [...]".
func Diff(old, new Policy) []string {
	var a, b any
	ra, _ := json.Marshal(old)
	rb, _ := json.Marshal(new)
	_ = json.Unmarshal(ra, &a)
	_ = json.Unmarshal(rb, &b)
	var out []string
	diffValue("approval", a, b, &out)
	return out
}

func diffValue(path string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diffValue(path+"."+k, am[k], bm[k], out)
		}
		return
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) == string(jb) {
		return
	}
	switch {
	case a == nil:
		*out = append(*out, fmt.Sprintf("%s: added %s", path, jb))
	case b == nil:
		*out = append(*out, fmt.Sprintf("%s: removed (was %s)", path, ja))
	default:
		*out = append(*out, fmt.Sprintf("%s: %s → %s", path, ja, jb))
	}
}
