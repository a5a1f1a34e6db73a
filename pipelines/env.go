package pipelines

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"

	"github.com/ica-governance/ica"
)

// Environment variables the commands read. The ICA_ names are ICA's own
// (ICA_URL and ICA_TOKEN are a contract, docs/design.md); the others are Azure
// Pipelines predefined variables in their environment form
// (Build.BuildId → BUILD_BUILDID).
const (
	EnvURL        = "ICA_URL"
	EnvToken      = "ICA_TOKEN"
	EnvAudience   = "ICA_AUDIENCE"
	EnvApprovalID = "ICA_APPROVAL_ID"
	// EnvArtifactDigest is the digest of the artifact a run deploys
	// (sha256:<hex>), when the pipeline knows it.
	EnvArtifactDigest = "ICA_ARTIFACT_DIGEST"

	EnvBuildID           = "BUILD_BUILDID"
	EnvDefinitionName    = "BUILD_DEFINITIONNAME"
	EnvSourceBranch      = "BUILD_SOURCEBRANCH"
	EnvSourceVersion     = "BUILD_SOURCEVERSION"
	EnvRequestedForEmail = "BUILD_REQUESTEDFOREMAIL"
	EnvRequestedFor      = "BUILD_REQUESTEDFOR"
	EnvCollectionURI     = "SYSTEM_COLLECTIONURI"
	EnvTeamProject       = "SYSTEM_TEAMPROJECT"
	EnvJobID             = "SYSTEM_JOBID"
	EnvJobAttempt        = "SYSTEM_JOBATTEMPT"
	EnvJobStatus         = "AGENT_JOBSTATUS"
	// EnvTaskDisplayName is set by the agent for each step; it is not in the
	// documented table but distinguishes steps when deriving event ids.
	EnvTaskDisplayName = "TASK_DISPLAYNAME"
)

// lookup reads a variable through getenv (os.Getenv in main), trimmed.
// Unexpanded Azure macros such as "$(ICA_TOKEN)" (what a step sees when the
// variable it maps is not defined) count as unset.
func lookup(getenv func(string) string, name string) string {
	v := strings.TrimSpace(getenv(name))
	if isMacro(v) {
		return ""
	}
	return v
}

// isMacro reports whether v is an Azure Pipelines macro left unexpanded.
func isMacro(v string) bool {
	return strings.HasPrefix(v, "$(") && strings.HasSuffix(v, ")")
}

// RunStartFromEnv builds a run start from Azure Pipelines predefined
// variables:
//
//	run_id        BUILD_BUILDID
//	pipeline_name BUILD_DEFINITIONNAME
//	branch        BUILD_SOURCEBRANCH (the full ref, e.g. refs/heads/main)
//	commit        BUILD_SOURCEVERSION
//	triggered_by  TriggeredBy(BUILD_REQUESTEDFOREMAIL, BUILD_REQUESTEDFOR)
//	url           RunURL(SYSTEM_COLLECTIONURI, SYSTEM_TEAMPROJECT, BUILD_BUILDID)
//
// Fields whose variables are unset stay empty; the caller's flags fill them.
func RunStartFromEnv(getenv func(string) string) ica.RunStart {
	id := lookup(getenv, EnvBuildID)
	return ica.RunStart{
		RunID:        id,
		PipelineName: lookup(getenv, EnvDefinitionName),
		Branch:       lookup(getenv, EnvSourceBranch),
		Commit:       lookup(getenv, EnvSourceVersion),
		TriggeredBy:  TriggeredBy(lookup(getenv, EnvRequestedForEmail), lookup(getenv, EnvRequestedFor)),
		URL:          RunURL(lookup(getenv, EnvCollectionURI), lookup(getenv, EnvTeamProject), id),
	}
}

// TriggeredBy names the person a run is for, as ICA's approval rules need it:
// the Mattermost username, so that "the requester cannot approve" can match
// the approver's Mattermost account. It assumes the common convention that
// Mattermost usernames are the part of the corporate email before "@"
// (lower-cased, without a "+tag"): jane.doe@contoso.com → jane.doe. Without
// an email (scheduled builds, some service-triggered runs) it falls back to
// Build.RequestedFor, the display name. Where the convention does not hold,
// pass --triggered-by.
func TriggeredBy(email, displayName string) string {
	email = strings.TrimSpace(email)
	if at := strings.LastIndex(email, "@"); at > 0 {
		local := email[:at]
		if plus := strings.Index(local, "+"); plus > 0 {
			local = local[:plus]
		}
		return strings.ToLower(local)
	}
	return strings.TrimSpace(displayName)
}

// RunURL is the run's results page:
// <collection>/<project>/_build/results?buildId=<id>. It is empty when a part
// is missing.
func RunURL(collectionURI, project, buildID string) string {
	if collectionURI == "" || project == "" || buildID == "" {
		return ""
	}
	return strings.TrimRight(collectionURI, "/") + "/" + url.PathEscape(project) +
		"/_build/results?buildId=" + url.QueryEscape(buildID)
}

// RunStatus maps Agent.JobStatus (AGENT_JOBSTATUS) to an ICA run status:
// Succeeded and SucceededWithIssues → success, Failed → failed,
// Canceled → cancelled. The comparison ignores case.
func RunStatus(jobStatus string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(jobStatus)) {
	case "succeeded", "succeededwithissues":
		return ica.RunSuccess, nil
	case "failed":
		return ica.RunFailed, nil
	case "canceled", "cancelled":
		return ica.RunCancelled, nil
	case "":
		return "", fmt.Errorf("%s is not set", EnvJobStatus)
	}
	return "", fmt.Errorf("unknown job status %q (want Succeeded, SucceededWithIssues, Failed or Canceled)", jobStatus)
}

// CombineResults turns the results of several Azure Pipelines stages or jobs
// (Succeeded, SucceededWithIssues, Failed, Canceled, Skipped; as in
// dependencies.X.result) into one run status: cancelled if any was
// cancelled, else failed if any failed, else success if any succeeded.
// Skipped results do not count. It errs when no result counts.
func CombineResults(results ...string) (string, error) {
	var cancelled, failed, succeeded bool
	for _, r := range results {
		for _, part := range strings.Split(r, ",") {
			part = strings.TrimSpace(part)
			if part == "" || isMacro(part) || strings.EqualFold(part, "Skipped") {
				continue
			}
			st, err := RunStatus(part)
			if err != nil {
				return "", err
			}
			switch st {
			case ica.RunCancelled:
				cancelled = true
			case ica.RunFailed:
				failed = true
			default:
				succeeded = true
			}
		}
	}
	switch {
	case cancelled:
		return ica.RunCancelled, nil
	case failed:
		return ica.RunFailed, nil
	case succeeded:
		return ica.RunSuccess, nil
	}
	return "", fmt.Errorf("no result among %q says how the run ended", results)
}

// EventID derives a deterministic event_id from the Azure Pipelines job
// (System.JobId, unique per attempt of a job), the job attempt, the step and
// the event type, so that a retried request or a re-run of the same step
// (retryCountOnTaskFailure) is recorded once while the same event type from
// another step or another job attempt is recorded again. It returns "" when
// there is no job id (outside a pipeline); the client then uses a random id.
func EventID(jobID, attempt, step, eventType string) string {
	if jobID == "" {
		return ""
	}
	h := sha256.New()
	for _, p := range []string{jobID, attempt, step, eventType} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "azp-" + hex.EncodeToString(h.Sum(nil)[:16])
}
