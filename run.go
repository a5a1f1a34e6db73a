package ica

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"time"
)

// Run statuses. A run is running from its start until it is finished with
// one of the final statuses.
const (
	RunRunning   = "running"
	RunSuccess   = "success"
	RunFailed    = "failed"
	RunCancelled = "cancelled"
)

// Input limits, shared by every entry point so a pipeline sees the same
// answer whichever way it reaches ICA.
const (
	MaxNameLen      = 256
	MaxRefLen       = 1024
	MaxURLLen       = 2048
	MaxEventDataLen = 64 << 10
	MaxEventTypeLen = 128
	MaxIDLen        = 128
)

// Run is one Azure Pipelines run as ICA knows it.
type Run struct {
	RunID          string     `json:"run_id"`
	PipelineName   string     `json:"pipeline_name"`
	Branch         string     `json:"branch"`
	Commit         string     `json:"commit"`
	TriggeredBy    string     `json:"triggered_by"`
	ArtifactDigest string     `json:"artifact_digest,omitempty"`
	URL            string     `json:"url,omitempty"`
	Status         string     `json:"status"`
	StartTime      time.Time  `json:"start_time"`
	EndTime        *time.Time `json:"end_time,omitempty"`
	EventCount     int        `json:"event_count"`
	// Actor is the credential that started the run (pipeline token name or JWT subject).
	Actor string `json:"actor"`
	// Credential binds the run to the credential that started it
	// ("token:<name>", "entra-oid:<object id>"): only that credential may
	// add events, finish, request, use or void (least privilege).
	Credential string `json:"credential,omitempty"`
	// AuditHash is the ledger hash of the entry that finished the run.
	AuditHash string `json:"audit_hash,omitempty"`
	// StartSeq is the ledger sequence of the run's start entry.
	StartSeq uint64 `json:"start_seq"`
	// RequestedForEmail and RequestedForID are who Azure DevOps says the
	// run is for (Build.RequestedForEmail, Build.RequestedForId), beside
	// triggered_by: that person may not approve it.
	RequestedForEmail string `json:"requested_for_email,omitempty"`
	RequestedForID    string `json:"requested_for_id,omitempty"`
	// LastSeq is the ledger entry that last changed this record (its start
	// or its finish): ica check compares the record with the ledger there.
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// Requester returns the run's Azure DevOps requester.
func (r *Run) Requester() RunRequester {
	return RunRequester{Email: r.RequestedForEmail, ID: r.RequestedForID}
}

// Final reports whether the run has finished.
func (r *Run) Final() bool { return r.Status != RunRunning }

// RunStart is the body of POST /api/v1/runs.
type RunStart struct {
	PipelineName   string `json:"pipeline_name"`
	RunID          string `json:"run_id"`
	Branch         string `json:"branch"`
	Commit         string `json:"commit"`
	TriggeredBy    string `json:"triggered_by"`
	ArtifactDigest string `json:"artifact_digest,omitempty"`
	URL            string `json:"url,omitempty"`
	// RequestedForEmail and RequestedForID are the Azure DevOps identity the
	// run is for (Build.RequestedForEmail, Build.RequestedForId). They are
	// optional; when given, the requester check compares them too.
	RequestedForEmail string `json:"requested_for_email,omitempty"`
	RequestedForID    string `json:"requested_for_id,omitempty"`
}

// RunRequester is the identity a run was requested for, as Azure DevOps
// names it, beside the run's triggered_by.
type RunRequester struct {
	Email string `json:"requested_for_email,omitempty"`
	ID    string `json:"requested_for_id,omitempty"`
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	commitPattern = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)
	digestPattern = regexp.MustCompile(`^[a-z0-9]+:[0-9a-fA-F]{32,128}$`)
)

// ValidID checks an identifier used in URLs and ledger keys.
func ValidID(field, v string) error {
	if v == "" {
		return FieldErrorf(EINVALID, field, "%s is required", field)
	}
	if len(v) > MaxIDLen {
		return FieldErrorf(EINVALID, field, "%s is longer than %d bytes", field, MaxIDLen)
	}
	if !idPattern.MatchString(v) {
		return FieldErrorf(EINVALID, field, "%s may contain only letters, digits, '.', '_', ':' and '-'", field)
	}
	return nil
}

// Validate checks a run start and names the first bad field.
func (s *RunStart) Validate() error {
	if err := ValidText("pipeline_name", s.PipelineName, MaxNameLen, true); err != nil {
		return err
	}
	if err := ValidID("run_id", s.RunID); err != nil {
		return err
	}
	if err := ValidText("branch", s.Branch, MaxRefLen, true); err != nil {
		return err
	}
	if err := ValidText("commit", s.Commit, 64, true); err != nil {
		return err
	}
	if !commitPattern.MatchString(s.Commit) {
		return FieldErrorf(EINVALID, "commit", "commit must be a hexadecimal commit id (7 to 64 characters)")
	}
	if err := ValidText("triggered_by", s.TriggeredBy, MaxNameLen, true); err != nil {
		return err
	}
	if _, err := ParseRequester(s.TriggeredBy); err != nil {
		return FieldErrorf(EINVALID, "triggered_by", "triggered_by %s", err)
	}
	if s.RequestedForEmail != "" {
		if err := ValidText("requested_for_email", s.RequestedForEmail, MaxNameLen, false); err != nil {
			return err
		}
		if NormalizeEmail(s.RequestedForEmail) == "" {
			return FieldErrorf(EINVALID, "requested_for_email", "requested_for_email must be an e-mail address")
		}
	}
	if s.RequestedForID != "" {
		if err := ValidID("requested_for_id", s.RequestedForID); err != nil {
			return err
		}
	}
	if s.ArtifactDigest != "" && !digestPattern.MatchString(s.ArtifactDigest) {
		return FieldErrorf(EINVALID, "artifact_digest", "artifact_digest must look like sha256:<hex>")
	}
	if err := ValidText("url", s.URL, MaxURLLen, false); err != nil {
		return err
	}
	if s.URL != "" && !strings.HasPrefix(s.URL, "https://") && !strings.HasPrefix(s.URL, "http://") {
		return FieldErrorf(EINVALID, "url", "url must be an http(s) URL")
	}
	return nil
}

// Diff lists the fields in which a repeated start differs from the stored run;
// empty means the repeat is the same start (an idempotent retry).
func (s *RunStart) Diff(r *Run) []string {
	var d []string
	if s.PipelineName != r.PipelineName {
		d = append(d, "pipeline_name")
	}
	if s.Branch != r.Branch {
		d = append(d, "branch")
	}
	if s.Commit != r.Commit {
		d = append(d, "commit")
	}
	if s.TriggeredBy != r.TriggeredBy {
		d = append(d, "triggered_by")
	}
	if s.ArtifactDigest != r.ArtifactDigest {
		d = append(d, "artifact_digest")
	}
	if s.URL != r.URL {
		d = append(d, "url")
	}
	if s.RequestedForEmail != r.RequestedForEmail {
		d = append(d, "requested_for_email")
	}
	if s.RequestedForID != r.RequestedForID {
		d = append(d, "requested_for_id")
	}
	return d
}

// Event is one thing that happened in a run (a build step, a test result).
type Event struct {
	RunID     string          `json:"run_id"`
	Seq       int             `json:"seq"`
	EventID   string          `json:"event_id,omitempty"`
	EventType string          `json:"event_type"`
	EventData json.RawMessage `json:"event_data"`
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor"`
	LedgerSeq uint64          `json:"ledger_seq"`
	Hash      string          `json:"hash"`
}

// EventInput is the body of POST /api/v1/runs/{run_id}/events.
type EventInput struct {
	EventType string          `json:"event_type"`
	EventData json.RawMessage `json:"event_data"`
	EventID   string          `json:"event_id,omitempty"`

	// Authorize, when set, is called with the run as stored, in the write
	// that records the event; its error refuses the event. The caller's
	// right to write to the run is checked there, without a read of its
	// own.
	Authorize func(*Run) error `json:"-"`
}

// Validate checks an event and names the first bad field.
func (e *EventInput) Validate() error {
	_, err := e.Canonical()
	return err
}

// Canonical validates an event and returns its event_data in the canonical
// form the ledger records.
func (e *EventInput) Canonical() ([]byte, error) {
	if err := ValidText("event_type", e.EventType, MaxEventTypeLen, true); err != nil {
		return nil, err
	}
	if e.EventID != "" {
		if err := ValidID("event_id", e.EventID); err != nil {
			return nil, err
		}
	}
	trimmed := bytes.TrimSpace(e.EventData)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		return nil, FieldErrorf(EINVALID, "event_data", "event_data is required (a JSON object)")
	}
	if len(e.EventData) > MaxEventDataLen {
		return nil, FieldErrorf(EINVALID, "event_data", "event_data is larger than %d KiB", MaxEventDataLen>>10)
	}
	if trimmed[0] != '{' || !json.Valid(trimmed) {
		return nil, FieldErrorf(EINVALID, "event_data", "event_data must be a JSON object")
	}
	data, err := CanonicalJSON(e.EventData)
	if err != nil {
		return nil, FieldErrorf(EINVALID, "event_data", "event_data cannot be recorded exactly: %s", strings.TrimPrefix(err.Error(), "canonical json: "))
	}
	return data, nil
}

// RunFinish is the body of POST /api/v1/runs/{run_id}/finish.
type RunFinish struct {
	Status  string     `json:"status"`
	EndTime *time.Time `json:"end_time,omitempty"`

	// Authorize, when set, is called with the run as stored, in the write
	// that finishes it; its error refuses the finish.
	Authorize func(*Run) error `json:"-"`
}

// Validate checks the finish status.
func (f *RunFinish) Validate() error {
	switch f.Status {
	case RunSuccess, RunFailed, RunCancelled:
		return nil
	case "":
		return FieldErrorf(EINVALID, "status", "status is required (success, failed or cancelled)")
	}
	return FieldErrorf(EINVALID, "status", "status %q is not one of success, failed, cancelled", f.Status)
}

// RunFilter selects runs for GET /api/v1/runs. Results are newest first.
type RunFilter struct {
	Pipeline string
	Status   string
	From, To time.Time // zero means unbounded; To is exclusive
	Limit    int
	Cursor   string // opaque, from the previous page
}

// RunPage is one page of runs; NextCursor is empty on the last page.
type RunPage struct {
	Runs       []*Run `json:"runs"`
	NextCursor string `json:"next_cursor,omitempty"`
}
