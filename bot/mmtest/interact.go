package mmtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

// ErrServerDown is returned by the user-side methods (Click, SubmitDialog,
// SlashCommand ...) while SetDown(true) is in effect: nobody can click on a
// server that is down.
var ErrServerDown = errors.New("mmtest: server is down")

// maxIntegrationResponse is the most a 6.7.2 server reads of a slash command reply.
const maxIntegrationResponse = 1 << 20

// userAgent is what Mattermost sends on every outbound integration call.
const userAgent = "Mattermost-Bot/1.1"

// ClickResult is the outcome of a click, as the clicking user's client saw
// it, plus what went over the wire to the integration.
type ClickResult struct {
	// Status is what the client got: 200, or 400 (integration error or
	// timeout), 403 (not a channel member), 404 (no such action).
	Status   int
	AppError *model.AppError
	// ClientTriggerID is the short trigger id the client got back (the
	// first field of the signed trigger_id the integration received).
	ClientTriggerID string
	// Request is the body sent to the integration; nil if nothing was sent.
	Request *model.PostActionIntegrationRequest
	// RawRequest is the exact JSON sent.
	RawRequest []byte
	// IntegrationStatus is the status the integration answered (0 if the
	// call failed or was not made).
	IntegrationStatus int
	// Response is the integration's reply, parsed (nil if unusable).
	Response *model.PostActionIntegrationResponse
	// Elapsed is how long the integration took to answer.
	Elapsed time.Duration
}

type triggerInfo struct {
	userID    string
	channelID string
}

func (s *Server) lookupUser(username string) (*model.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userByNameLocked(username)
	if u == nil {
		return nil, fmt.Errorf("mmtest: no user %q", username)
	}
	return u, nil
}

// Click clicks a button on a post as username, like the real server's
// POST /api/v4/posts/{post_id}/actions/{action_id}: the integration gets a
// PostActionIntegrationRequest (no action id, no Authorization header, a
// signed trigger_id), and its reply updates the post. A non-200 result is
// returned together with its *model.AppError as the error.
func (s *Server) Click(postID, actionID, username string) (*ClickResult, error) {
	return s.clickWith(postID, actionID, username, "")
}

// Select picks an option of a message menu (type "select") as username;
// Mattermost adds context.selected_option.
func (s *Server) Select(postID, actionID, username, option string) (*ClickResult, error) {
	return s.clickWith(postID, actionID, username, option)
}

func (s *Server) clickWith(postID, actionID, username, option string) (*ClickResult, error) {
	if s.isDown() {
		return nil, ErrServerDown
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return nil, err
	}
	res := s.doAction(context.Background(), u.Id, postID, actionID, option)
	if res.AppError != nil {
		return res, res.AppError
	}
	return res, nil
}

func actionIntegrationError(detail string) *model.AppError {
	e := newAppError("DoActionRequest", http.StatusBadRequest, "api.post.do_action.action_integration.app_error", "Action integration error.")
	e.DetailedError = detail
	return e
}

// doAction is DoPostActionWithCookie of a 6.7.2 server (without cookies).
func (s *Server) doAction(ctx context.Context, userID, postID, actionID, selected string) *ClickResult {
	res := &ClickResult{}
	fail := func(e *model.AppError) *ClickResult {
		res.Status = e.StatusCode
		res.AppError = e
		return res
	}

	if !isAlphanumeric(actionID) {
		// The real route only matches [A-Za-z0-9]+: anything else is no page at all.
		return fail(newAppError("", http.StatusNotFound, "api.context.404.app_error", "Sorry, we could not find the page."))
	}
	s.mu.Lock()
	u := s.users[userID]
	post := s.posts[postID]
	if u == nil || post == nil || !s.isMemberLocked(post.ChannelId, userID) {
		s.mu.Unlock()
		return fail(forbidden("doPostAction"))
	}
	channel := s.channels[post.ChannelId]
	stored := clonePost(post)
	action := stored.GetAction(actionID)
	if action == nil || action.Integration == nil {
		s.mu.Unlock()
		return fail(newAppError("DoPostActionWithCookie", http.StatusNotFound, "api.post.do_action.action_id.app_error", "Invalid action id."))
	}
	retain := map[string]any{}
	var remove []string
	for _, k := range retainPropKeys {
		if v, ok := stored.GetProps()[k]; ok {
			retain[k] = v
		} else {
			remove = append(remove, k)
		}
	}
	originalProps := clonePost(post).GetProps()
	originalPinned, originalReactions := post.IsPinned, post.HasReactions
	rootID := post.Id
	if post.RootId != "" {
		rootID = post.RootId
	}
	req := &model.PostActionIntegrationRequest{
		UserId:      u.Id,
		UserName:    u.Username,
		ChannelId:   channel.Id,
		ChannelName: channel.Name,
		TeamId:      channel.TeamId,
		PostId:      post.Id,
		Type:        action.Type,
		Context:     action.Integration.Context,
	}
	if t := s.teams[channel.TeamId]; t != nil {
		req.TeamName = t.Name
	}
	if req.Type == model.PostActionTypeSelect && selected != "" {
		if req.Context == nil {
			req.Context = map[string]any{}
		}
		req.DataSource = action.DataSource
		req.Context["selected_option"] = selected
	}
	s.current[u.Id] = channel.Id
	res.ClientTriggerID, req.TriggerId = s.newTriggerLocked(u.Id, channel.Id)
	upstreamURL := action.Integration.URL
	s.mu.Unlock()

	body, err := json.Marshal(req)
	if err != nil {
		return fail(newAppError("DoPostActionWithCookie", http.StatusInternalServerError, "api.marshal_error", err.Error()))
	}
	res.Request = req
	res.RawRequest = body
	status, _, respBody, elapsed, err := s.post(ctx, upstreamURL, "application/json", body, nil)
	res.IntegrationStatus = status
	res.Elapsed = elapsed
	if err != nil {
		return fail(actionIntegrationError("err=" + err.Error()))
	}
	if status != http.StatusOK {
		return fail(actionIntegrationError("status=" + strconv.Itoa(status)))
	}
	var reply model.PostActionIntegrationResponse
	if len(respBody) > 0 {
		if err := json.Unmarshal(respBody, &reply); err != nil {
			return fail(actionIntegrationError(err.Error()))
		}
	}
	res.Response = &reply

	s.mu.Lock()
	defer s.mu.Unlock()
	if upd := reply.Update; upd != nil {
		upd.Id = postID
		if upd.GetProps() == nil {
			// The quirk: a message-only update keeps the old props and buttons.
			upd.SetProps(originalProps)
		} else {
			for k, v := range retain {
				upd.AddProp(k, v)
			}
			for _, k := range remove {
				upd.DelProp(k)
			}
		}
		upd.IsPinned = originalPinned
		upd.HasReactions = originalReactions
		if cur := s.posts[postID]; cur != nil {
			s.updatePostLocked(cur, upd)
		}
	}
	if reply.EphemeralText != "" {
		msg := reply.EphemeralText
		if !reply.SkipSlackParsing {
			msg = model.ParseSlackLinksToMarkdown(msg)
		}
		p := &model.Post{
			Id: model.NewId(), CreateAt: s.millis(), UserId: u.Id, ChannelId: channel.Id,
			RootId: rootID, Message: msg, Type: model.PostTypeEphemeral,
		}
		p.SetProps(model.StringInterface{})
		for k, v := range retain {
			p.AddProp(k, v)
		}
		s.ephemerals = append(s.ephemerals, Ephemeral{
			UserID: u.Id, Username: u.Username, ChannelID: channel.Id, RootID: rootID,
			Message: msg, Source: "action", Post: p,
		})
		s.publishEphemeralLocked(u.Id, p)
	}
	res.Status = http.StatusOK
	return res
}

// post sends an outbound integration request the way Mattermost does.
func (s *Server) post(ctx context.Context, target, contentType string, body []byte, header http.Header) (int, string, []byte, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, 0, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", contentType)
	start := time.Now()
	resp, err := s.outbound.Do(req)
	if err != nil {
		return 0, "", nil, time.Since(start), err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIntegrationResponse+1))
	elapsed := time.Since(start)
	if err != nil {
		return resp.StatusCode, "", nil, elapsed, err
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), data, elapsed, nil
}

// newTriggerLocked makes a signed trigger_id in the real format:
// base64("<clientTriggerId>:<userId>:<unixMillis>:" + base64(ASN.1 ECDSA-SHA256 signature)).
func (s *Server) newTriggerLocked(userID, channelID string) (clientID, triggerID string) {
	clientID = model.NewId()
	data := clientID + ":" + userID + ":" + strconv.FormatInt(s.millis(), 10) + ":"
	sum := sha256.Sum256([]byte(data))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, sum[:])
	if err != nil {
		panic("mmtest: sign trigger id: " + err.Error())
	}
	triggerID = base64.StdEncoding.EncodeToString([]byte(data + base64.StdEncoding.EncodeToString(sig)))
	if s.triggers == nil {
		s.triggers = map[string]triggerInfo{}
	}
	s.triggers[clientID] = triggerInfo{userID: userID, channelID: channelID}
	return clientID, triggerID
}

func triggerError(status int, id, msg string) *model.AppError {
	return newAppError("DecodeAndVerifyTriggerId", status, id, msg)
}

// verifyTrigger checks a trigger_id like DecodeAndVerifyTriggerId with a 3 s
// lifetime on the injected clock, and that this fake issued it.
func (s *Server) verifyTrigger(trigger string) (userID, channelID string, _ *model.AppError) {
	raw, err := base64.StdEncoding.DecodeString(trigger)
	if err != nil {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.base64_decode_failed", "Failed to decode base64 for trigger ID for interactive dialog.")
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.missing_data", "Trigger ID missing required data for interactive dialog.")
	}
	clientID, uid, tsStr := parts[0], parts[1], parts[2]
	ts, _ := strconv.ParseInt(tsStr, 10, 64)
	if s.now().Sub(time.UnixMilli(ts)) > TriggerIDLifetime {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.expired", "Trigger ID for interactive dialog is expired. Trigger IDs live for a maximum of 3 seconds.")
	}
	sig, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.base64_decode_failed_signature", "Failed to decode base64 signature of trigger ID for interactive dialog.")
	}
	sum := sha256.Sum256([]byte(clientID + ":" + uid + ":" + tsStr + ":"))
	if !ecdsa.VerifyASN1(&s.key.PublicKey, sum[:], sig) {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.verify_signature_failed", "Signature verification failed of trigger ID for interactive dialog.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.triggers[clientID]
	if !ok || info.userID != uid || s.users[uid] == nil {
		return "", "", triggerError(http.StatusBadRequest, "interactive_message.decode_trigger_id.verify_signature_failed", "Signature verification failed of trigger ID for interactive dialog.")
	}
	return uid, info.channelID, nil
}

// SubmitDialog submits a dialog as username, like the webapp calling
// POST /api/v4/actions/dialogs/submit: the client chooses url, callback_id,
// state and submission (so forged submissions are possible); the server
// only checks channel and team membership and sets user_id. channel_id is
// the user's current channel (see SetCurrentChannel). The integration's
// reply (e.g. field errors) is returned.
func (s *Server) SubmitDialog(username, url, callbackID, state string, submission map[string]any, cancelled bool) (*model.SubmitDialogResponse, error) {
	if s.isDown() {
		return nil, ErrServerDown
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	c := s.userCurrentChannelLocked(u.Id)
	req := model.SubmitDialogRequest{URL: url, CallbackId: callbackID, State: state, Submission: submission, Cancelled: cancelled}
	if c != nil {
		req.ChannelId, req.TeamId = c.Id, s.teamForLocked(c, u.Id)
	}
	s.mu.Unlock()
	resp, appErr := s.submitDialog(context.Background(), u.Id, req)
	if appErr != nil {
		return nil, appErr
	}
	return resp, nil
}

// SubmitOpenDialog submits the most recent dialog opened for username, with
// its own url, callback_id and state, and closes it.
func (s *Server) SubmitOpenDialog(username string, submission map[string]any) (*model.SubmitDialogResponse, error) {
	return s.finishOpenDialog(username, submission, false)
}

// CancelOpenDialog closes the most recent dialog opened for username; the
// integration hears about it only if the dialog has notify_on_cancel.
func (s *Server) CancelOpenDialog(username string) (*model.SubmitDialogResponse, error) {
	return s.finishOpenDialog(username, nil, true)
}

func (s *Server) finishOpenDialog(username string, submission map[string]any, cancelled bool) (*model.SubmitDialogResponse, error) {
	if s.isDown() {
		return nil, ErrServerDown
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	ds := s.dialogs[u.Id]
	if len(ds) == 0 {
		s.mu.Unlock()
		return nil, fmt.Errorf("mmtest: no dialog open for %q", username)
	}
	d := ds[len(ds)-1]
	s.dialogs[u.Id] = ds[:len(ds)-1]
	req := model.SubmitDialogRequest{
		URL: d.URL, CallbackId: d.Dialog.CallbackId, State: d.Dialog.State,
		Submission: submission, Cancelled: cancelled,
	}
	if c := s.channels[d.ChannelID]; c != nil {
		req.ChannelId, req.TeamId = c.Id, s.teamForLocked(c, u.Id)
	}
	s.mu.Unlock()
	if cancelled && !d.Dialog.NotifyOnCancel {
		return &model.SubmitDialogResponse{}, nil
	}
	resp, appErr := s.submitDialog(context.Background(), u.Id, req)
	if appErr != nil {
		return nil, appErr
	}
	return resp, nil
}

// teamForLocked is the team_id a client sends from a channel (for a direct
// channel, the user's current team).
func (s *Server) teamForLocked(c *model.Channel, userID string) string {
	if c.TeamId != "" {
		return c.TeamId
	}
	for _, id := range sortedIDs(s.teams) {
		if s.teamMembers[id][userID] {
			return id
		}
	}
	return ""
}

// submitDialog is SubmitInteractiveDialog of a 6.7.2 server.
func (s *Server) submitDialog(ctx context.Context, userID string, req model.SubmitDialogRequest) (*model.SubmitDialogResponse, *model.AppError) {
	s.mu.Lock()
	c := s.channels[req.ChannelId]
	// read_channel comes from channel membership; a team member who is not
	// in the channel is refused, as in the captures.
	if c == nil || !s.isMemberLocked(c.Id, userID) || !s.teamMembers[req.TeamId][userID] {
		s.mu.Unlock()
		return nil, forbidden("submitDialog")
	}
	s.mu.Unlock()
	if req.URL == "" {
		return nil, invalidBodyParam("url")
	}
	target := req.URL
	req.URL = ""
	req.Type = "dialog_submission"
	req.UserId = userID // everything else is forwarded as the client sent it
	body, err := json.Marshal(req)
	if err != nil {
		return nil, newAppError("SubmitInteractiveDialog", http.StatusInternalServerError, "api.marshal_error", err.Error())
	}
	status, _, respBody, _, err := s.post(ctx, target, "application/json", body, nil)
	if err != nil {
		return nil, actionIntegrationError("err=" + err.Error())
	}
	if status != http.StatusOK {
		return nil, actionIntegrationError("status=" + strconv.Itoa(status))
	}
	var resp model.SubmitDialogResponse
	_ = json.Unmarshal(respBody, &resp) // the real server ignores a bad body
	return &resp, nil
}

// SlashCommand runs a slash command as username in a channel, like
// POST /api/v4/commands/execute: text is the whole command line
// ("/ica export from=2026-01-01"). The integration gets the form-encoded
// request of the captures (token as form field and as
// "Authorization: Token"), with a fresh response_url on this server. The
// status and reply are what the invoking client got; in_channel replies
// are posted as the invoking user, others recorded as ephemerals.
func (s *Server) SlashCommand(username, channelName, text string) (status int, resp *model.CommandResponse, err error) {
	if s.isDown() {
		return 0, nil, ErrServerDown
	}
	u, err := s.lookupUser(username)
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	c := s.mustChannelLocked(channelName)
	s.mu.Unlock()
	resp, appErr := s.executeCommand(context.Background(), u, c.Id, "", text)
	if appErr != nil {
		return appErr.StatusCode, nil, appErr
	}
	return http.StatusOK, resp, nil
}

// handleExecuteCommand handles "POST /api/v4/commands/execute", what the
// webapp calls when a user sends a slash command.
func (s *Server) handleExecuteCommand(w http.ResponseWriter, r *http.Request, me *model.User) {
	var args model.CommandArgs
	if err := decodeJSON(r, &args); err != nil {
		writeErr(w, r, newAppError("executeCommand", http.StatusBadRequest, "api.context.invalid_body_param.app_error", "Invalid or missing command_args in request body."))
		return
	}
	if len(args.Command) <= 1 || !strings.HasPrefix(args.Command, "/") || !model.IsValidId(args.ChannelId) {
		writeErr(w, r, newAppError("executeCommand", http.StatusBadRequest, "api.command.execute_command.start.app_error", "No command trigger found."))
		return
	}
	resp, appErr := s.executeCommand(r.Context(), me, args.ChannelId, args.TeamId, args.Command)
	if appErr != nil {
		writeErr(w, r, appErr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// executeCommand is ExecuteCommand of a 6.7.2 server for a custom command:
// the channel's members only; the team is the channel's (teamID counts only
// in direct channels).
func (s *Server) executeCommand(ctx context.Context, u *model.User, channelID, teamID, text string) (*model.CommandResponse, *model.AppError) {
	s.mu.Lock()
	c := s.channels[channelID]
	if c == nil || !s.isMemberLocked(c.Id, u.Id) {
		s.mu.Unlock()
		return nil, forbidden("executeCommand")
	}
	if c.TeamId != "" || teamID == "" {
		teamID = s.teamForLocked(c, u.Id)
	}
	line := strings.TrimPrefix(text, "/")
	trigger, args, _ := strings.Cut(line, " ")
	trigger = strings.ToLower(trigger)
	cmd := s.commands[teamID+"/"+trigger]
	if cmd == nil {
		s.mu.Unlock()
		return nil, newAppError("ExecuteCommand", http.StatusNotFound, "api.command.execute_command.not_found.app_error",
			"Command with a trigger of '"+trigger+"' not found. To send a message beginning with \"/\", try adding an empty space at the beginning of the message.")
	}
	hook := &commandHook{id: model.NewId(), userID: u.Id, channelID: c.Id, createdAt: s.now()}
	s.hooks[hook.id] = hook
	responseURL := s.URL + "/hooks/commands/" + hook.id
	clientTrigger, triggerID := s.newTriggerLocked(u.Id, c.Id)
	s.current[u.Id] = c.Id
	form := url.Values{}
	form.Set("channel_id", c.Id)
	form.Set("channel_name", c.Name)
	form.Set("command", "/"+trigger)
	form.Set("response_url", responseURL)
	if t := s.teams[cmd.teamID]; t != nil {
		form.Set("team_domain", t.Name)
	}
	form.Set("team_id", cmd.teamID)
	form.Set("text", args)
	form.Set("token", cmd.token)
	form.Set("trigger_id", triggerID)
	form.Set("user_id", u.Id)
	form.Set("user_name", u.Username)
	s.addMentionsLocked(form, cmd.teamID, args)
	s.mu.Unlock()

	hdr := http.Header{"Authorization": {"Token " + cmd.token}}
	st, ct, body, _, err := s.post(ctx, cmd.url, "application/x-www-form-urlencoded", []byte(form.Encode()), hdr)
	call := SlashCall{Form: form, ResponseURL: responseURL, Status: st, Body: body}
	s.mu.Lock()
	s.slashCalls = append(s.slashCalls, call)
	s.mu.Unlock()
	failed := newAppError("ExecuteCommand", http.StatusInternalServerError, "api.command.execute_command.failed.app_error",
		"Command with a trigger of '"+trigger+"' failed.")
	if err != nil {
		failed.DetailedError = err.Error()
		return nil, failed
	}
	if st != http.StatusOK {
		return nil, newAppError("ExecuteCommand", http.StatusInternalServerError, "api.command.execute_command.failed_resp.app_error",
			"Command with a trigger of '"+trigger+"' returned response "+strconv.Itoa(st)+" "+http.StatusText(st)+".")
	}
	if len(body) > maxIntegrationResponse {
		body = body[:maxIntegrationResponse]
	}
	resp, perr := model.CommandResponseFromHTTPBody(ct, bytes.NewReader(body))
	if perr != nil || resp == nil {
		return nil, failed
	}
	s.mu.Lock()
	s.applyCommandResponseLocked(u.Id, c.Id, resp, "command")
	s.mu.Unlock()
	resp.TriggerId = clientTrigger
	return resp, nil
}

// addMentionsLocked adds the mention fields Mattermost derives from the text.
func (s *Server) addMentionsLocked(form url.Values, teamID, text string) {
	var users, userIDs, chans, chanIDs []string
	for _, w := range strings.Fields(text) {
		w = strings.TrimRight(w, ".,;:!?")
		switch {
		case strings.HasPrefix(w, "@"):
			if u := s.userByNameLocked(strings.ToLower(w[1:])); u != nil {
				users, userIDs = append(users, u.Username), append(userIDs, u.Id)
			}
		case strings.HasPrefix(w, "~"):
			if c := s.channelByNameLocked(teamID, w[1:]); c != nil {
				chans, chanIDs = append(chans, c.Name), append(chanIDs, c.Id)
			}
		}
	}
	if len(users) > 0 {
		form.Set("user_mentions", strings.Join(users, ","))
		form.Set("user_mentions_ids", strings.Join(userIDs, ","))
	}
	if len(chans) > 0 {
		form.Set("channel_mentions", strings.Join(chans, ","))
		form.Set("channel_mentions_ids", strings.Join(chanIDs, ","))
	}
}
