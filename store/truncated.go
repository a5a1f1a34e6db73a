package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's file format: each of the two meta pages is a 16-byte page header
// followed by the meta (magic, version, page size, flags, root bucket,
// freelist, high-water page id, txid, checksum), little-endian.
const (
	boltPageHeader = 16
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltMetaSum    = 56 // bytes of the meta covered by its checksum
)

// CheckSize refuses a ledger file that is shorter than its own newest valid
// meta page says (a truncated copy, or a disk that lost the end of the
// file). bbolt maps the pages the meta names, and reading one that lies past
// the end of the file kills the process with SIGBUS instead of returning an
// error, so tools check this before they open a file they did not write.
// A file without a valid meta page is left to Open, which reports it.
func CheckSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	pageSize := uint64(4096)
	var best struct{ txid, pgid uint64 }
	found := false
	for i := range 2 {
		buf := make([]byte, boltPageHeader+boltMetaSum+8)
		if _, err := f.ReadAt(buf, int64(uint64(i)*pageSize)); err != nil && err != io.EOF {
			continue
		}
		m := buf[boltPageHeader:]
		sum := fnv.New64a()
		sum.Write(m[:boltMetaSum])
		if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion ||
			binary.LittleEndian.Uint64(m[56:]) != sum.Sum64() {
			continue
		}
		if i == 0 {
			pageSize = uint64(binary.LittleEndian.Uint32(m[8:]))
		}
		txid, pgid := binary.LittleEndian.Uint64(m[48:]), binary.LittleEndian.Uint64(m[40:])
		if !found || txid > best.txid {
			best.txid, best.pgid, found = txid, pgid, true
		}
	}
	if !found {
		return nil
	}
	if want := best.pgid * pageSize; uint64(fi.Size()) < want {
		return fmt.Errorf("ledger file %s is truncated (%d bytes; its meta page says %d); it was left untouched: restore it from a backup", path, fi.Size(), want)
	}
	return nil
}
