package store

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/ica-governance/ica"
)

// maxApprovalScan bounds how many approvals one listing request examines,
// so a filter that matches little never walks the whole ledger at once: the
// page then comes back short, with a cursor to go on from.
const maxApprovalScan = 10_000

// Approvals lists approvals newest first (approval ids are numbered in
// creation order), filtered by status and target, one page at a time.
func (s *Store) Approvals(ctx context.Context, f ica.ApprovalFilter) (*ica.ApprovalPage, error) {
	if f.Limit <= 0 {
		f.Limit = defaultPageSize
	}
	if f.Limit > maxPageSize {
		f.Limit = maxPageSize
	}
	var from uint64 // the number of the first approval to examine; 0: the newest
	if f.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(c) != 8 || binary.BigEndian.Uint64(c) == 0 {
			return nil, ica.FieldErrorf(ica.EINVALID, "cursor", "cursor is not one this listing returned")
		}
		from = binary.BigEndian.Uint64(c)
	}
	page := &ica.ApprovalPage{Approvals: []*ica.Approval{}}
	err := s.view(func(tx Tx) error {
		b := tx.Bucket(bucketApprovals)
		n := b.Sequence()
		if from != 0 && from < n {
			n = from
		}
		for scanned := 0; n > 0; n, scanned = n-1, scanned+1 {
			if len(page.Approvals) == f.Limit || scanned == maxApprovalScan {
				page.NextCursor = base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, n))
				break
			}
			a, err := getJSON[ica.Approval](b, []byte(fmt.Sprintf("A-%d", n)))
			if err != nil {
				return err
			}
			if a == nil || (f.Status != "" && a.Status != f.Status) || (f.Target != "" && a.Target != f.Target) ||
				(f.Pipeline != "" && a.PipelineName != f.Pipeline) {
				continue
			}
			page.Approvals = append(page.Approvals, a)
		}
		return nil
	})
	return page, err
}
