package ica

import (
	"net/url"
	"regexp"
	"strings"
)

// CheckCallback is what an Azure Pipelines "Invoke REST API" check in
// callback mode sends in its headers, kept until the approval is decided so
// ICA can post TaskCompleted to the plan.
type CheckCallback struct {
	PlanURL        string `json:"plan_url"`
	ProjectID      string `json:"project_id"`
	HubName        string `json:"hub_name"`
	PlanID         string `json:"plan_id"`
	JobID          string `json:"job_id"`
	TaskInstanceID string `json:"task_instance_id"`
	TimelineID     string `json:"timeline_id,omitempty"`
	// AuthToken is the job's token (valid 48 h); never logged, never in the
	// ledger, and never stored in clear: the store keeps it sealed
	// (OutboxMessage.Sealed) until the TaskCompleted is delivered.
	AuthToken string `json:"auth_token,omitempty"`
	// LinkedSeq is the approval.check_linked entry that recorded it (set by
	// the store).
	LinkedSeq uint64 `json:"linked_seq,omitempty"`
}

var checkIDPattern = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// Validate checks the callback headers and names the first bad one.
func (c *CheckCallback) Validate() error {
	u, err := url.Parse(c.PlanURL)
	if c.PlanURL == "" {
		return FieldErrorf(EINVALID, "PlanUrl", "header PlanUrl is required")
	} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return FieldErrorf(EINVALID, "PlanUrl", "header PlanUrl must be an http(s) URL")
	}
	for _, f := range []struct{ name, v string }{{"ProjectId", c.ProjectID}, {"PlanId", c.PlanID}, {"JobId", c.JobID}, {"TaskInstanceId", c.TaskInstanceID}} {
		if !checkIDPattern.MatchString(f.v) {
			return FieldErrorf(EINVALID, f.name, "header %s is required (a GUID)", f.name)
		}
	}
	if c.TimelineID != "" && !checkIDPattern.MatchString(c.TimelineID) {
		return FieldErrorf(EINVALID, "TimelineId", "header TimelineId must be a GUID")
	}
	switch strings.ToLower(c.HubName) {
	case "build", "release":
	default:
		return FieldErrorf(EINVALID, "HubName", "header HubName must be build or release")
	}
	if strings.TrimSpace(c.AuthToken) == "" {
		return FieldErrorf(EINVALID, "AuthToken", "header AuthToken is required (map $(system.AccessToken))")
	}
	return nil
}

// TokenContext binds a sealed job token to its callback (the additional
// data of its encryption), so a sealed token cannot be moved to another
// plan, job or task.
func (c *CheckCallback) TokenContext() []byte {
	return []byte("ado-job-token\x00" + c.PlanID + "\x00" + c.JobID + "\x00" + c.TaskInstanceID)
}

// EventsURL is where the decision is posted.
func (c *CheckCallback) EventsURL() string {
	return strings.TrimRight(c.PlanURL, "/") + "/" + c.ProjectID + "/_apis/distributedtask/hubs/" +
		strings.ToLower(c.HubName) + "/plans/" + c.PlanID + "/events?api-version=2.0-preview.1"
}

// CheckResult is the TaskCompleted result for an approval's final status.
func CheckResult(status string) string {
	if status == ApprovalApproved || status == ApprovalBypassed {
		return "succeeded"
	}
	return "failed"
}

// CheckDestination is the outbox destination of Azure Pipelines check callbacks.
const CheckDestination = "ado-check"

// CheckCompletion is the outbox payload that posts a decision to a plan.
type CheckCompletion struct {
	Callback   CheckCallback `json:"callback"`
	ApprovalID string        `json:"approval_id"`
	Status     string        `json:"status"`
	Result     string        `json:"result"` // succeeded | failed
}
