package store

import (
	"bytes"
	"sync"

	"github.com/ica-governance/ica"
)

// maxRunMemo bounds the decoded runs kept (about 2 KB each: far more than
// the runs that are open at once); the memo starts over beyond it.
const maxRunMemo = 1024

// runMemo keeps decoded run records with the exact bytes they were decoded
// from. Every event and finish reads its run (twice on bbolt: the
// pre-check and the write), and decoding the record's JSON was most of
// that read. A record is served from the memo only when the stored bytes
// are equal to those it was decoded from, so a run changed by another
// writer, replica or engine is always decoded afresh: the memo holds no
// state of its own.
type runMemo struct {
	mu sync.Mutex
	m  map[string]*memoRun
}

type memoRun struct {
	raw []byte
	run ica.Run
}

// mustRun reads a run as mustRun does, decoding it only when its stored
// bytes changed since the last decode.
func (m *runMemo) mustRun(tx Tx, id string) (*ica.Run, error) {
	v := tx.Bucket(bucketRuns).Get([]byte(id))
	if v == nil {
		return nil, errRunNotFound(id)
	}
	m.mu.Lock()
	e := m.m[id]
	m.mu.Unlock()
	if e != nil && bytes.Equal(e.raw, v) {
		return e.copyRun(), nil
	}
	e = &memoRun{raw: bytes.Clone(v)}
	if err := decodeRecord([]byte(id), e.raw, &e.run); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.m == nil || len(m.m) >= maxRunMemo {
		m.m = make(map[string]*memoRun)
	}
	m.m[id] = e
	m.mu.Unlock()
	return e.copyRun(), nil
}

// copyRun returns a run the caller may change.
func (e *memoRun) copyRun() *ica.Run {
	r := e.run
	if r.EndTime != nil {
		t := *r.EndTime
		r.EndTime = &t
	}
	return &r
}
