package bench

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltResult is one run of the raw bbolt baseline.
type BoltResult struct {
	Writes   int64         // writes committed inside the window
	Duration time.Duration // length of the window
	Errors   int64
	Latency  []time.Duration // sorted, per Batch call inside the window
	// DiskBytes is what the whole run (warm-up included) wrote to storage,
	// and AllWrites the writes it committed, for bytes per write.
	DiskBytes, AllWrites int64
}

// PerSec is the committed write rate.
func (r BoltResult) PerSec() float64 { return float64(r.Writes) / r.Duration.Seconds() }

// BoltBatch measures raw bbolt: clients goroutines each call db.Batch in a
// loop, every call putting one value of valueSize bytes under a key from
// NextSequence, into a fresh file at path. bbolt's default batch settings
// (MaxBatchSize 1000, MaxBatchDelay 10ms) and fsync on every commit are
// kept: this is what "raw bbolt Batch" means in the targets.
func BoltBatch(path string, clients, valueSize int, warmup, d time.Duration) (BoltResult, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return BoltResult{}, fmt.Errorf("open baseline %s: %w", path, err)
	}
	defer db.Close()
	bucket := []byte("bench")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return BoltResult{}, err
	}
	value := make([]byte, valueSize)
	_, _ = rand.Read(value)

	io0, _ := ProcIOWriteBytes(0)
	w := NewWindow(warmup, d)
	var writes, errs, all atomic.Int64
	var lat Latencies
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh := lat.Shard()
			defer sh.Done()
			for {
				begin := time.Now()
				if !w.Open(begin) {
					return
				}
				err := db.Batch(func(tx *bolt.Tx) error {
					b := tx.Bucket(bucket)
					seq, err := b.NextSequence()
					if err != nil {
						return err
					}
					k := make([]byte, 8)
					binary.BigEndian.PutUint64(k, seq)
					return b.Put(k, value)
				})
				end := time.Now()
				if err != nil {
					errs.Add(1)
					continue
				}
				all.Add(1)
				if w.Contains(begin, end) {
					writes.Add(1)
					sh.Add(end.Sub(begin))
				}
			}
		}()
	}
	wg.Wait()
	io1, _ := ProcIOWriteBytes(0)
	return BoltResult{Writes: writes.Load(), Duration: w.Duration(), Errors: errs.Load(), Latency: lat.Sorted(),
		DiskBytes: io1 - io0, AllWrites: all.Load()}, nil
}
