// Package slashcmds implements the /ica slash command ("POST /mattermost/slash"):
// status views of approvals, runs, incidents and budget, and signed audit
// exports posted to the channel as a file and archived.
//
// # Setting up the command in Mattermost
//
// In Mattermost, open Integrations → Slash Commands → Add Slash Command (or
// System Console → Integrations → Integration Management to allow custom
// slash commands first), and fill in:
//
//   - Title: ICA; Description: Deployment governance
//   - Command Trigger Word: ica
//   - Request URL: <ICA_PUBLIC_URL>/mattermost/slash
//   - Request Method: POST
//   - Autocomplete: on; Autocomplete Hint: [status|approvals|incidents|budget|export|help];
//     Autocomplete Description: Deployment approvals, runs, incidents, budget and audit exports
//
// Mattermost then shows the command's token: give it to ICA in
// ICA_SLASH_TOKENS (comma-separated; several are allowed, e.g. one per
// team, or the old and new token while rotating). A request whose token does
// not match is answered with an ephemeral refusal and nothing runs.
//
// When ICA is on a private address, the Mattermost server must allow it in
// ServiceSettings.AllowedUntrustedInternalConnections.
//
// The bot account that posts export files (ICA_MATTERMOST_TOKEN) must be a
// member of every channel in which /ica export is used; otherwise the export
// is reported as failed through the command's response_url.
//
// Handler.AutocompleteData describes the subcommands and their arguments for
// clients that support rich autocomplete (model.Command.AutocompleteData,
// settable through the API); the Integrations page only takes the hint and
// description above.
//
// # Replies
//
// Every reply is HTTP 200 with an ephemeral model.CommandResponse (JSON):
// Mattermost shows any other status as a generic "command failed". Exports
// answer at once and continue in the background: the file is posted in the
// channel by the bot, and failures are reported through the command's
// response_url (at most 5 uses within 30 minutes, counted) or, failing that,
// logged.
package slashcmds
