package store

import (
	"os"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMapped tells the kernel the process no longer needs the ledger's
// mapped pages (MADV_DONTNEED on a read-only shared file mapping: the next
// access reads them again from the page cache; nothing is lost). The
// address comes from bbolt as a number, so the raw system call is used.
//
// The range must lie inside the mapping: MADV_DONTNEED zeroes anonymous
// memory, and whatever follows the mapping in the address space (the Go
// heap) is not the ledger's. It is taken inside a read transaction, during
// which bbolt cannot remap the file, and it ends at the transaction's
// high-water mark, which the mapping always covers. The file itself may be
// longer than the mapping: bbolt grows it ahead in chunks.
func (e *boltEngine) releaseMapped() {
	_ = e.db.View(func(tx *bolt.Tx) error {
		if addr, size := releaseRange(tx); size > 0 {
			_, _, _ = unix.Syscall(unix.SYS_MADVISE, addr, size, unix.MADV_DONTNEED)
		}
		return nil
	})
}

// releaseRange is the part of the mapping releaseMapped hands back: from
// its start to the transaction's high-water mark, in whole pages.
func releaseRange(tx *bolt.Tx) (addr, size uintptr) {
	info := tx.DB().Info()
	if info == nil || info.Data == 0 {
		return 0, 0
	}
	return info.Data, uintptr(tx.Size()) &^ uintptr(os.Getpagesize()-1)
}
