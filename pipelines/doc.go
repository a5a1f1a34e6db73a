// Package pipelines is the client side of ICA that Azure Pipelines run: an
// HTTP client for the pipeline API (runs, events, approvals), the `ica run …`
// and `ica approval …` commands built on it, and the YAML template that calls
// them.
//
// The client is safe to retry by design. The server treats a repeated run
// start, a repeated event_id, a repeated finish with the same status and a
// repeated approval request for the same open approval as the same request,
// so the client retries transient failures (network errors, 429, 502, 503,
// 504) of every call, and gives every event an event_id before the first
// attempt. The CLI derives that id from the Azure Pipelines job, step and
// event type, so even a re-run of the same step (retryCountOnTaskFailure) is
// recorded once.
//
// The commands read Azure Pipelines predefined variables from the
// environment, so a step is one line:
//
//	ica run start
//	ica run event --type build.completed --data '{"image":"web:1.2"}'
//	ica approval request --target production --cost 1234.5
//	ica approval wait
//	ica run finish
//
// ICA_URL and ICA_TOKEN (a contract, see docs/design.md) say where ICA is and which
// bearer token to send. Without ICA_TOKEN, ICA_AUDIENCE names the Entra ID
// application ICA accepts tokens for; the token then comes from
// azidentity.DefaultAzureCredential (Managed Identity on an Azure agent,
// workload identity, or an `az login` session) for scope "<audience>/.default".
package pipelines
