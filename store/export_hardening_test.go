package store

import (
	"errors"
	"sync"
)

// HoldWriter occupies the writer with an operation that waits until release
// is called (and then fails, writing nothing): what still answers meanwhile
// did not need the writer. release may be called more than once. Tests only.
func (s *Store) HoldWriter() (release func()) {
	running, done := make(chan struct{}), make(chan struct{})
	go func() {
		_ = s.update(func(Tx, *txState) error {
			close(running)
			<-done
			return errors.New("held by a test")
		})
	}()
	<-running
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}

// SetPrecheck turns the read-only pre-checks of precheck.go off or on.
func (s *Store) SetPrecheck(on bool) { s.noPrecheck = !on }

// PrechecksPipelineWrites reports whether this engine pre-checks pipeline
// writes (local reads), not only dashboard links.
func (s *Store) PrechecksPipelineWrites() bool {
	r, ok := s.eng.(interface{ remoteReads() bool })
	return !ok || !r.remoteReads()
}

// PutRaw writes one record as it is, bypassing the operations (records of
// an earlier version). Tests only.
func (s *Store) PutRaw(bucket string, key, value []byte) error {
	return s.update(func(tx Tx, st *txState) error { return tx.Bucket([]byte(bucket)).Put(key, value) })
}
