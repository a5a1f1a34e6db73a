package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// releaseMapped tells the kernel the process no longer needs the ledger's
// mapped pages (MADV_DONTNEED on a read-only shared file mapping: the next
// access reads them again from the page cache; nothing is lost). The
// address comes from bbolt as a number, so the raw system call is used.
func (e *boltEngine) releaseMapped() {
	info := e.db.Info()
	fi, err := os.Stat(e.path)
	if err != nil || info == nil || info.Data == 0 {
		return
	}
	size := uintptr(fi.Size()) &^ uintptr(os.Getpagesize()-1)
	if size == 0 {
		return
	}
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, info.Data, size, unix.MADV_DONTNEED)
}
