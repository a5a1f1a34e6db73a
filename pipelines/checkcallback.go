package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// CheckDeliverer posts TaskCompleted to an Azure Pipelines plan when an
// approval linked to a check (callback mode) is decided. It is the outbox
// deliverer of ica.CheckDestination.
type CheckDeliverer struct {
	HTTP *http.Client
	// Tokens opens the job token sealed in the message (OutboxMessage.Sealed).
	Tokens *JobTokenKey
}

var _ ica.Deliverer = (*CheckDeliverer)(nil)

// Deliver implements ica.Deliverer.
func (d *CheckDeliverer) Deliver(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	var c ica.CheckCompletion
	if err := json.Unmarshal(msg.Payload, &c); err != nil {
		return false, fmt.Errorf("check callback %d: bad payload: %w", msg.ID, err)
	}
	token, err := d.jobToken(msg, &c)
	if err != nil {
		// Final: no retry brings a key back.
		return false, fmt.Errorf("check callback for %s: %w", c.ApprovalID, err)
	}
	c.Callback.AuthToken = token // for the redaction below
	body, _ := json.Marshal(map[string]string{"name": "TaskCompleted", "taskId": c.Callback.TaskInstanceID,
		"jobId": c.Callback.JobID, "result": c.Result})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Callback.EventsURL(), bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("check callback for %s: %w", c.ApprovalID, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	hc := d.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	res, err := hc.Do(req)
	if err != nil {
		// The URL error may quote the URL, never the token (it is a header).
		return true, fmt.Errorf("post TaskCompleted for %s: %w", c.ApprovalID, err)
	}
	defer res.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	switch {
	case res.StatusCode/100 == 2:
		return false, nil
	case res.StatusCode == http.StatusTooManyRequests:
		wait := 30 * time.Second
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		return true, &ica.RetryAfterError{After: wait, Err: fmt.Errorf("Azure DevOps answered 429 for %s", c.ApprovalID)}
	case res.StatusCode >= 500 || res.StatusCode == http.StatusRequestTimeout:
		return true, fmt.Errorf("Azure DevOps answered %d for %s", res.StatusCode, c.ApprovalID)
	}
	// 401 after the token's 48 hours, 404 for a plan that is gone: final.
	return false, fmt.Errorf("Azure DevOps refused TaskCompleted for %s: %d %s", c.ApprovalID, res.StatusCode,
		strings.TrimSpace(strings.ReplaceAll(string(snippet), c.Callback.AuthToken, "[redacted]")))
}

// jobToken returns the job token of a message: opened from Sealed, or, for
// a message queued by an ICA that kept tokens in clear, from the payload.
func (d *CheckDeliverer) jobToken(msg *ica.OutboxMessage, c *ica.CheckCompletion) (string, error) {
	switch {
	case len(msg.Sealed) > 0 && d.Tokens == nil:
		return "", errors.New("the job token is sealed, and this server has no job token key to open it")
	case len(msg.Sealed) > 0:
		t, err := d.Tokens.Open(msg.Sealed, c.Callback.TokenContext())
		if err != nil {
			return "", err
		}
		return string(t), nil
	case c.Callback.AuthToken != "":
		return c.Callback.AuthToken, nil
	}
	return "", errors.New("no job token was kept for this check; re-run the check in Azure Pipelines")
}

// AzureDevOpsHosts returns a check of plan URLs against an allow-list of
// host names ("dev.azure.com", "*.visualstudio.com"; "*." matches one or
// more labels), so a forged PlanUrl cannot make ICA send a job token
// elsewhere. Loopback hosts are allowed only when listed.
func AzureDevOpsHosts(allowed []string) func(planURL string) error {
	return func(planURL string) error {
		u, err := url.Parse(planURL)
		if err != nil {
			return ica.FieldErrorf(ica.EINVALID, "PlanUrl", "header PlanUrl is not a URL")
		}
		host := strings.ToLower(u.Hostname())
		for _, a := range allowed {
			a = strings.ToLower(strings.TrimSpace(a))
			if host == a || (strings.HasPrefix(a, "*.") && strings.HasSuffix(host, a[1:])) {
				if u.Scheme != "https" && host != "127.0.0.1" && host != "localhost" {
					return ica.FieldErrorf(ica.EINVALID, "PlanUrl", "header PlanUrl must use https")
				}
				return nil
			}
		}
		return ica.FieldErrorf(ica.EFORBIDDEN, "PlanUrl", "PlanUrl host %q is not an allowed Azure DevOps host", host)
	}
}
