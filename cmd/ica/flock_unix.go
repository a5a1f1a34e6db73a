//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockLedger takes the same exclusive lock bbolt takes on the ledger file,
// without waiting, so an `ica serve` (running, or starting meanwhile)
// cannot have the file open while it is replaced. Whatever the file's
// content, even a corrupted one, can be locked. The returned func unlocks.
func lockLedger(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("ledger is locked by another process: %s (stop ica serve first)", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
