package export

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/ica-governance/ica"
)

// dataCanon turns an entry's data into canonical JSON (byte-for-byte what
// ica.CanonicalJSON returns) and pulls out the few fields people want to
// read next to it, reusing its buffers: it runs once per exported entry.
// Results are valid until the next call.
type dataCanon struct {
	c     *ica.Canonicalizer
	d     derived
	topFn func(key, value []byte) // c.top, bound once
}

// derived are the readable fields shown beside a record.
type derived struct {
	RunID, Pipeline, Status string
}

var errBadJSON = errors.New("data is not valid JSON")

func newDataCanon() *dataCanon {
	dc := &dataCanon{c: ica.NewCanonicalizer()}
	dc.topFn = dc.top
	return dc
}

// canon returns the canonical form of raw ("null" when empty) and the
// derived fields when raw is an object.
func (c *dataCanon) canon(raw []byte) ([]byte, derived, error) {
	if len(raw) == 0 {
		return []byte("null"), derived{}, nil
	}
	c.d = derived{}
	out, err := c.c.Canonical(raw, c.topFn)
	if err != nil {
		return nil, derived{}, fmt.Errorf("%w: %s", errBadJSON, strings.TrimPrefix(err.Error(), "canonical json: "))
	}
	return out, c.d, nil
}

// top reads the derived fields from the object's top level.
func (c *dataCanon) top(key, v []byte) {
	switch string(key) {
	case "run_id":
		c.d.RunID = plainString(v)
	case "pipeline_name":
		c.d.Pipeline = plainString(v)
	case "status":
		c.d.Status = plainString(v)
	}
}

// plainString returns the value of a canonical JSON string without escapes
// ("" for anything else: the derived columns are a convenience).
func plainString(v []byte) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1])
	}
	return ""
}

// hasher recomputes ledger entry hashes as ica.LedgerEntry.ComputeHash
// does, reusing buffers.
type hasher struct{ dc *dataCanon }

func newHasher() *hasher { return &hasher{dc: newDataCanon()} }

// hash returns the hex hash e should carry.
func (h *hasher) hash(e *ica.LedgerEntry) (string, error) {
	data, _, err := h.dc.canon(e.Data)
	if err != nil {
		return "", err
	}
	return h.dc.c.HashEntry(e, data), nil
}
