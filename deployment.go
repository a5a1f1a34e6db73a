package ica

import (
	"encoding/json"
	"strings"
)

// EventDeployment is the event type of a deployment report:
// POST /api/v1/runs/{run_id}/events {"event_type": "deployment",
// "event_data": {"target": "staging", "result": "succeeded"}}. It is the
// evidence that promotion from staging relies on, and it releases the
// deployment lock the run holds for that target.
const EventDeployment = "deployment"

// Deployment results.
const (
	DeploySucceeded = "succeeded"
	DeployFailed    = "failed"
)

// DeploymentReport is the event data of a deployment report.
type DeploymentReport struct {
	Target string `json:"target"`
	Result string `json:"result"`
}

// ParseDeploymentReport reads and checks the event data of a deployment
// report, naming the bad field.
func ParseDeploymentReport(data json.RawMessage) (*DeploymentReport, error) {
	var r DeploymentReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, FieldErrorf(EINVALID, "event_data", "a deployment report's event_data must be {\"target\": \"staging\", \"result\": \"succeeded\"}")
	}
	switch r.Target {
	case TargetStaging, TargetProduction:
	case "":
		return nil, FieldErrorf(EINVALID, "event_data.target", "a deployment report needs event_data.target (staging or production)")
	default:
		return nil, FieldErrorf(EINVALID, "event_data.target", "event_data.target %q is not staging or production", r.Target)
	}
	switch r.Result {
	case DeploySucceeded, DeployFailed:
	case "":
		return nil, FieldErrorf(EINVALID, "event_data.result", "a deployment report needs event_data.result (succeeded or failed)")
	default:
		return nil, FieldErrorf(EINVALID, "event_data.result", "event_data.result %q is not succeeded or failed", r.Result)
	}
	return &r, nil
}

// ValidCommitParam checks a commit that a caller names to prove what it
// deploys (a query or body value): 7 to 64 hexadecimal characters.
func ValidCommitParam(field, v string) error {
	if !commitPattern.MatchString(v) {
		return FieldErrorf(EINVALID, field, "%s must be 7 to 64 hexadecimal characters (a commit id)", field)
	}
	return nil
}

// ValidDigestParam checks an artifact digest a caller names (sha256:<hex>).
func ValidDigestParam(field, v string) error {
	if !digestPattern.MatchString(v) {
		return FieldErrorf(EINVALID, field, "%s must look like sha256:<hex>", field)
	}
	return nil
}

// CommitCovers reports whether the commit a caller names is the one a run
// recorded. A full id (40 or more characters) must equal it; a shorter one
// matches only a run that recorded a full SHA (40 or 64 characters) as its
// prefix, since a short id recorded by the run proves nothing.
func CommitCovers(recorded, asked string) bool {
	r, a := strings.ToLower(recorded), strings.ToLower(asked)
	if len(a) >= 40 {
		return r == a
	}
	return (len(r) == 40 || len(r) == 64) && strings.HasPrefix(r, a)
}

// Coverage checks that an approval covers the deployment a caller names:
// its run, commit and artifact digest (each optional). It returns "" when
// it does, else what differs.
func (a *Approval) Coverage(runID, commit, digest string) string {
	if runID != "" && runID != a.RunID {
		return "approval " + a.ID + " is for run " + a.RunID + ", not run " + runID
	}
	if commit != "" && !CommitCovers(a.Commit, commit) {
		if len(commit) < 40 && len(a.Commit) != 40 && len(a.Commit) != 64 {
			return "commit " + commit + " is a short id and run " + a.RunID + " recorded no full commit SHA to compare it with; send the full SHA"
		}
		return "commit " + commit + " is not the approved commit " + a.Commit
	}
	if digest != "" {
		if a.ArtifactDigest == "" {
			return "run " + a.RunID + " recorded no artifact digest, so approval " + a.ID + " does not cover artifact " + digest
		}
		if !strings.EqualFold(digest, a.ArtifactDigest) {
			return "artifact digest " + digest + " is not the approved digest " + a.ArtifactDigest
		}
	}
	return ""
}

// Refusal is an error whose answer carries more than the error document:
// the gate's verdict (can_deploy, waiting_for, opens_at, …) or covers:
// false. It unwraps to its *Error, so ErrorCode and ErrorMessage see it.
type Refusal struct {
	Err     *Error
	Details map[string]any
}

// Error implements error.
func (r *Refusal) Error() string { return r.Err.Error() }

// Unwrap returns the *Error.
func (r *Refusal) Unwrap() error { return r.Err }

// UseRequest is the body of POST /api/v1/approvals/{id}/use: the pipeline's
// last call before it deploys, naming what it deploys.
type UseRequest struct {
	RunID          string `json:"run_id"`
	Commit         string `json:"commit"`
	ArtifactDigest string `json:"artifact_digest,omitempty"`
}

// Validate checks a use request and names the first bad field.
func (u *UseRequest) Validate() error {
	if err := ValidID("run_id", u.RunID); err != nil {
		return err
	}
	if u.Commit == "" {
		return FieldErrorf(EINVALID, "commit", "commit is required: the commit about to be deployed")
	}
	if err := ValidCommitParam("commit", u.Commit); err != nil {
		return err
	}
	if u.ArtifactDigest != "" {
		return ValidDigestParam("artifact_digest", u.ArtifactDigest)
	}
	return nil
}

// NotCovered is the refusal of a read or use that names a deployment the
// approval does not authorise (409, covers: false). It changes nothing.
func NotCovered(a *Approval, why string) error {
	return &Refusal{Err: Errorf(ECONFLICT, "approval %s does not cover this deployment: %s", a.ID, why),
		Details: map[string]any{"covers": false, "can_deploy": false, "approval_id": a.ID}}
}
