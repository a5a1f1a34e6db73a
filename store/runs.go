package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

func getJSON[T any](b Bucket, key []byte) (*T, error) {
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	var out T
	if err := decodeRecord(key, v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// decodeRecord decodes a stored JSON record, naming its key on failure.
func decodeRecord(key, v []byte, out any) error {
	if err := json.Unmarshal(v, out); err != nil {
		return fmt.Errorf("decode %s/%s: %w", "record", key, err)
	}
	return nil
}

func putJSON(b Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

func getRun(tx Tx, id string) (*ica.Run, error) {
	return getJSON[ica.Run](tx.Bucket(bucketRuns), []byte(id))
}

func mustRun(tx Tx, id string) (*ica.Run, error) {
	r, err := getRun(tx, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errRunNotFound(id)
	}
	return r, nil
}

func errRunNotFound(id string) error { return ica.Errorf(ica.ENOTFOUND, "run %s not found", id) }

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var sep = []byte{0}

func statusKey(r *ica.Run) []byte {
	return join([]byte(r.Status), sep, timeKey(r.StartTime), []byte(r.RunID))
}

// StartRun records the start of a run. A repeat of the same start returns
// the stored run with created=false; the same run id with other content is a
// conflict that names the fields that differ.
func (s *Store) StartRun(ctx context.Context, in *ica.RunStart, actor string) (run *ica.Run, created bool, err error) {
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	// A repeat is answered, and a conflicting one refused, by a read.
	if done, err := s.precheck(func(tx Tx) (bool, error) {
		old, err := startedRun(tx, in)
		run = old
		return old != nil, err
	}); err != nil || done {
		return run, false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		run, created = nil, false
		old, err := startedRun(tx, in)
		if err != nil {
			return err
		}
		if old != nil {
			run = old
			return nil
		}
		r := &ica.Run{RunID: in.RunID, PipelineName: in.PipelineName, Branch: in.Branch, Commit: in.Commit,
			TriggeredBy: in.TriggeredBy, ArtifactDigest: in.ArtifactDigest, URL: in.URL,
			RequestedForEmail: in.RequestedForEmail, RequestedForID: in.RequestedForID,
			Status: ica.RunRunning, StartTime: st.now, Actor: actor, Credential: ica.CredentialOf(ctx)}
		e, err := s.appendLedger(tx, st.now, ica.KindRunStarted, r.RunID, actor, r)
		if err != nil {
			return err
		}
		r.StartSeq, r.LastSeq = e.Seq, e.Seq
		if err := s.putRun(tx, r); err != nil {
			return err
		}
		tk := timeKey(r.StartTime)
		if err := tx.Bucket(bucketRunByStart).Put(join(tk, []byte(r.RunID)), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRunByPipeline).Put(join([]byte(r.PipelineName), sep, tk, []byte(r.RunID)), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRunByStatus).Put(statusKey(r), nil); err != nil {
			return err
		}
		run, created = r, true
		return nil
	}, hintGet(bucketRuns, []byte(in.RunID)))
	return run, created, err
}

// startedRun returns the run a start repeats (nil: a new run), or the
// conflict when the same run id was started with other content.
func startedRun(tx Tx, in *ica.RunStart) (*ica.Run, error) {
	old, err := getRun(tx, in.RunID)
	if err != nil || old == nil {
		return nil, err
	}
	if d := in.Diff(old); len(d) > 0 {
		return nil, ica.Errorf(ica.ECONFLICT, "run %s was already started with a different %s", in.RunID, strings.Join(d, ", "))
	}
	return old, nil
}

func (s *Store) putRun(tx Tx, r *ica.Run) error {
	return putJSON(tx.Bucket(bucketRuns), []byte(r.RunID), r)
}

func eventKey(runID string, seq int) []byte {
	k := make([]byte, len(runID)+1+4)
	copy(k, runID)
	binary.BigEndian.PutUint32(k[len(runID)+1:], uint32(seq))
	return k
}

// lastEventKey is where lastEventSeq seeks: past every event key of the run.
func lastEventKey(runID string) []byte {
	return append(append([]byte(runID), 0), 0xff, 0xff, 0xff, 0xff, 0xff)
}

// eventHints are the reads of an event or a finish: the run, the event id,
// and the run's newest event.
func (s *Store) eventHints(runID, eventID string) []readHint {
	h := []readHint{hintGet(bucketRuns, []byte(runID)), hintAround(bucketEvents, lastEventKey(runID))}
	if eventID != "" {
		h = append(h, hintGet(bucketEventIDs, join([]byte(runID), sep, []byte(eventID))))
	}
	return h
}

// lastEventSeq returns the seq of the run's newest event (0: none), from the
// key range of its events.
func lastEventSeq(tx Tx, runID string) int {
	c := tx.Bucket(bucketEvents).Cursor()
	prefix := append([]byte(runID), 0)
	k, _ := c.Seek(lastEventKey(runID))
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) || len(k) != len(prefix)+4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(k[len(prefix):]))
}

// withEventCount fills in the event count of a run that is still running
// (it is written to the run record only at finish, so an event does not
// rewrite the run).
func withEventCount(tx Tx, r *ica.Run) *ica.Run {
	if r != nil && !r.Final() {
		r.EventCount = lastEventSeq(tx, r.RunID)
	}
	return r
}

// getEvent reads an event: the events bucket maps (run, seq) to the ledger
// entry that holds it, so its data is stored once.
func getEvent(tx Tx, runID string, seq int) (*ica.Event, error) {
	v := tx.Bucket(bucketEvents).Get(eventKey(runID, seq))
	if len(v) != 8 {
		return nil, fmt.Errorf("event %d of run %s is missing", seq, runID)
	}
	return eventFromEntry(tx, binary.BigEndian.Uint64(v))
}

func eventFromEntry(tx Tx, ledgerSeq uint64) (*ica.Event, error) {
	le, err := getEntry(tx, ledgerSeq)
	if err != nil {
		return nil, err
	}
	var e ica.Event
	if err := json.Unmarshal(le.Data, &e); err != nil {
		return nil, fmt.Errorf("ledger entry %d is not an event: %w", ledgerSeq, err)
	}
	e.LedgerSeq, e.Hash = le.Seq, le.Hash
	return &e, nil
}

// eventRecord is an event as its ledger entry keeps it. Its fields are in
// the order of their JSON names and hold canonical values, so its encoding
// (without HTML escaping) is already canonical JSON and need not be
// canonicalised again on the hot path; TestEventRecord_IsCanonical checks it.
type eventRecord struct {
	Actor     string          `json:"actor"`
	EventData json.RawMessage `json:"event_data"`
	EventID   string          `json:"event_id,omitempty"`
	EventType string          `json:"event_type"`
	RunID     string          `json:"run_id"`
	Seq       int             `json:"seq"`
	Time      time.Time       `json:"time"`
}

func eventRecordJSON(e *ica.Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(eventRecord{Actor: e.Actor, EventData: e.EventData, EventID: e.EventID, EventType: e.EventType,
		RunID: e.RunID, Seq: e.Seq, Time: e.Time.UTC()}); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// eventCheck decides what an event meets before anything is written: an
// unknown run (not found), the event already recorded under its id (a
// repeat, returned), or a finished run (a conflict).
func (s *Store) eventCheck(tx Tx, runID string, idKey []byte, authorize func(*ica.Run) error) (*ica.Event, error) {
	r, err := s.runs.mustRun(tx, runID)
	if err != nil {
		return nil, err
	}
	if authorize != nil {
		if err := authorize(r); err != nil {
			return nil, err
		}
	}
	if idKey != nil {
		if v := tx.Bucket(bucketEventIDs).Get(idKey); v != nil {
			return getEvent(tx, runID, int(binary.BigEndian.Uint32(v)))
		}
	}
	if r.Final() {
		return nil, ica.Errorf(ica.ECONFLICT, "run %s already finished as %s; events cannot be added after finish", runID, r.Status)
	}
	return nil, nil
}

// AddEvent records an event of a running run. A repeated event_id returns the
// stored event with created=false.
func (s *Store) AddEvent(ctx context.Context, runID string, in *ica.EventInput, actor string) (ev *ica.Event, created bool, err error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, false, err
	}
	data, err := in.Canonical()
	if err != nil {
		return nil, false, err
	}
	var idKey []byte
	if in.EventID != "" {
		idKey = join([]byte(runID), sep, []byte(in.EventID))
	}
	// Unknown and finished runs are refused, and a repeated event id
	// answered, by a read.
	if done, err := s.precheck(func(tx Tx) (bool, error) {
		var err error
		ev, err = s.eventCheck(tx, runID, idKey, in.Authorize)
		return ev != nil, err
	}); err != nil || done {
		return ev, false, err
	}
	var report *ica.DeploymentReport
	if in.EventType == ica.EventDeployment {
		if report, err = ica.ParseDeploymentReport(data); err != nil {
			return nil, false, err
		}
	}
	err = s.update(func(tx Tx, st *txState) error {
		ev, created = nil, false
		var err error
		if ev, err = s.eventCheck(tx, runID, idKey, in.Authorize); err != nil || ev != nil {
			return err
		}
		e := &ica.Event{RunID: runID, Seq: lastEventSeq(tx, runID) + 1, EventID: in.EventID, EventType: in.EventType,
			EventData: data, Time: st.now, Actor: actor}
		canon, err := eventRecordJSON(e)
		if err != nil {
			return err
		}
		le, err := s.appendCanonical(tx, st.now, ica.KindRunEvent, runID, actor, canon)
		if err != nil {
			return err
		}
		e.LedgerSeq, e.Hash = le.Seq, le.Hash
		if err := tx.Bucket(bucketEvents).Put(eventKey(runID, e.Seq), u64(le.Seq)); err != nil {
			return err
		}
		if idKey != nil {
			seq := make([]byte, 4)
			binary.BigEndian.PutUint32(seq, uint32(e.Seq))
			if err := tx.Bucket(bucketEventIDs).Put(idKey, seq); err != nil {
				return err
			}
		}
		if report != nil {
			r, err := mustRun(tx, runID)
			if err != nil {
				return err
			}
			if err := s.recordDeploymentTx(tx, st, r, report, le.Seq); err != nil {
				return err
			}
		}
		ev, created = e, true
		return nil
	}, s.eventHints(runID, in.EventID)...)
	return ev, created, err
}

// finishCheck returns the run a finish applies to: a final run is a repeat
// (same status) or a conflict (another one).
func (s *Store) finishCheck(tx Tx, runID string, in *ica.RunFinish) (*ica.Run, error) {
	r, err := s.runs.mustRun(tx, runID)
	if err != nil {
		return nil, err
	}
	if in.Authorize != nil {
		if err := in.Authorize(r); err != nil {
			return nil, err
		}
	}
	if r.Final() && r.Status != in.Status {
		return nil, ica.Errorf(ica.ECONFLICT, "run %s already finished as %s, not %s", runID, r.Status, in.Status)
	}
	return r, nil
}

// FinishRun records the end of a run. Finishing again with the same status
// returns the stored run with changed=false; another status is a conflict.
func (s *Store) FinishRun(ctx context.Context, runID string, in *ica.RunFinish, actor string) (run *ica.Run, changed bool, err error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, false, err
	}
	if err := in.Validate(); err != nil {
		return nil, false, err
	}
	// Unknown runs and another status are refused, and a repeat answered,
	// by a read.
	if done, err := s.precheck(func(tx Tx) (bool, error) {
		r, err := s.finishCheck(tx, runID, in)
		if err != nil || !r.Final() {
			return false, err
		}
		run = r
		return true, nil
	}); err != nil || done {
		return run, false, err
	}
	err = s.update(func(tx Tx, st *txState) error {
		run, changed = nil, false
		r, err := s.finishCheck(tx, runID, in)
		if err != nil {
			return err
		}
		if r.Final() {
			run = r
			return nil
		}
		end := st.now
		if in.EndTime != nil {
			end = in.EndTime.UTC()
			if end.Before(r.StartTime) {
				return ica.FieldErrorf(ica.EINVALID, "end_time", "end_time %s is before the run's start_time %s",
					end.Format(time.RFC3339), r.StartTime.Format(time.RFC3339))
			}
			if end.After(st.now.Add(5 * time.Minute)) {
				return ica.FieldErrorf(ica.EINVALID, "end_time", "end_time %s is in the future", end.Format(time.RFC3339))
			}
		}
		if err := tx.Bucket(bucketRunByStatus).Delete(statusKey(r)); err != nil {
			return err
		}
		r.EventCount = lastEventSeq(tx, runID)
		r.Status, r.EndTime = in.Status, &end
		le, err := s.appendLedger(tx, st.now, ica.KindRunFinished, runID, actor, map[string]any{
			"run_id": r.RunID, "pipeline_name": r.PipelineName, "status": r.Status,
			"start_time": r.StartTime, "end_time": end, "event_count": r.EventCount,
		})
		if err != nil {
			return err
		}
		r.AuditHash, r.LastSeq = le.Hash, le.Seq
		if err := s.putRun(tx, r); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRunByStatus).Put(statusKey(r), nil); err != nil {
			return err
		}
		if err := s.runFinishedTx(tx, st, runID); err != nil {
			return err
		}
		run, changed = r, true
		return nil
	}, append(s.eventHints(runID, ""),
		// What a finished run releases: its approvals and the locks.
		hintAround(bucketApprByRun, join([]byte(runID), sep)), hintAround(bucketDeployLocks, []byte{}))...)
	return run, changed, err
}

// Run returns one run.
func (s *Store) Run(ctx context.Context, runID string) (*ica.Run, error) {
	if err := ica.ValidID("run_id", runID); err != nil {
		return nil, err
	}
	var r *ica.Run
	err := s.view(func(tx Tx) error {
		var err error
		r, err = mustRun(tx, runID)
		withEventCount(tx, r)
		return err
	})
	return r, err
}

// Events returns the events of a run in order.
func (s *Store) Events(ctx context.Context, runID string) ([]*ica.Event, error) {
	var out []*ica.Event
	err := s.view(func(tx Tx) error {
		if _, err := mustRun(tx, runID); err != nil {
			return err
		}
		prefix := append([]byte(runID), 0)
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+4; k, v = c.Next() {
			e, err := eventFromEntry(tx, binary.BigEndian.Uint64(v))
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// Runs lists runs newest first through the index that fits the filter,
// with an opaque cursor for the next page.
func (s *Store) Runs(ctx context.Context, f ica.RunFilter) (*ica.RunPage, error) {
	if f.Limit <= 0 {
		f.Limit = defaultPageSize
	}
	if f.Limit > maxPageSize {
		f.Limit = maxPageSize
	}
	var bucket, prefix []byte
	switch {
	case f.Pipeline != "":
		bucket, prefix = bucketRunByPipeline, join([]byte(f.Pipeline), sep)
	case f.Status != "":
		bucket, prefix = bucketRunByStatus, join([]byte(f.Status), sep)
	default:
		bucket, prefix = bucketRunByStart, nil
	}
	// Keys are prefix ‖ start(8) ‖ run_id; walk backwards from the upper bound.
	upper := join(prefix, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if !f.To.IsZero() {
		upper = join(prefix, timeKey(f.To))
	}
	if f.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || !bytes.HasPrefix(c, prefix) || len(c) <= len(prefix)+8 {
			return nil, ica.FieldErrorf(ica.EINVALID, "cursor", "cursor is not one this listing returned")
		}
		upper = c
	}
	var lower []byte
	if !f.From.IsZero() {
		lower = join(prefix, timeKey(f.From))
	}
	page := &ica.RunPage{Runs: []*ica.Run{}}
	var lastKey []byte
	err := s.view(func(tx Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, _ := c.Seek(upper)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev() // Seek lands on the first key >= upper, which is excluded
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
			if lower != nil && bytes.Compare(k, lower) < 0 {
				break
			}
			if len(page.Runs) == f.Limit {
				page.NextCursor = base64.RawURLEncoding.EncodeToString(lastKey)
				break
			}
			id := k[len(prefix)+8:]
			r, err := getRun(tx, string(id))
			if err != nil || r == nil {
				return fmt.Errorf("run index %s points at a missing run %q", bucket, id)
			}
			if f.Status != "" && r.Status != f.Status {
				continue
			}
			page.Runs = append(page.Runs, withEventCount(tx, r))
			lastKey = append(lastKey[:0], k...)
		}
		return nil
	})
	return page, err
}
