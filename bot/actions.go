package bot

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// dialogState is what ICA puts (signed) in a dialog's state, and remembers
// until the dialog is submitted: a dialog is honoured only if ICA opened it
// for that user, once.
type dialogState struct {
	ApprovalID string `json:"a"`
	Action     string `json:"x"`
	UserID     string `json:"u"`
	Nonce      string `json:"n"`
	Expires    int64  `json:"e"`
}

type dialogStore struct {
	mu    sync.Mutex
	clock ica.Clock
	open  map[string]dialogState // nonce → state
}

func newDialogStore(c ica.Clock) *dialogStore {
	return &dialogStore{clock: c, open: map[string]dialogState{}}
}

func (d *dialogStore) add(s dialogState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock.Now().Unix()
	for k, v := range d.open {
		if v.Expires < now {
			delete(d.open, k)
		}
	}
	d.open[s.Nonce] = s
}

// take returns and forgets the dialog with that nonce.
func (d *dialogStore) take(nonce string) (dialogState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.open[nonce]
	delete(d.open, nonce)
	return s, ok
}

func (d *dialogStore) peek(nonce string) (dialogState, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.open[nonce]
	return s, ok
}

func (b *Bot) encodeState(s dialogState) string {
	raw, _ := json.Marshal(s)
	body := base64.RawURLEncoding.EncodeToString(raw)
	return body + "." + sign(b.secret, "dialog", body)
}

func (b *Bot) decodeState(state string) (dialogState, error) {
	var s dialogState
	body, sig, ok := strings.Cut(state, ".")
	if !ok || !verify(b.secret, sig, "dialog", body) {
		return s, ica.Errorf(ica.EFORBIDDEN, "this dialog was not opened by ICA")
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(raw, &s) != nil {
		return s, ica.Errorf(ica.EFORBIDDEN, "this dialog was not opened by ICA")
	}
	return s, nil
}

func actionReply(w http.ResponseWriter, resp *model.PostActionIntegrationResponse) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

func ephemeral(w http.ResponseWriter, format string, args ...any) error {
	return actionReply(w, &model.PostActionIntegrationResponse{EphemeralText: fmt.Sprintf(format, args...)})
}

// HandleAction handles "POST /mattermost/actions": a click on a card button.
// Mattermost authenticates nothing, so the signed context proves the button
// is ICA's, post_id must be the card ICA posted, and the clicker must be
// allowed to decide the current step. A refused click changes nothing and
// gets an ephemeral explanation (HTTP 200, as Mattermost requires).
func (b *Bot) HandleAction(w http.ResponseWriter, r *http.Request) error {
	var req model.PostActionIntegrationRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ica.Errorf(ica.EINVALID, "malformed action request")
	}
	if _, ok := req.Context["incident_id"]; ok {
		return b.handleIncidentAction(w, r, req) // incident cards (incident.go)
	}
	str := func(k string) string { s, _ := req.Context[k].(string); return s }
	id, action, sig := str("approval_id"), str("action"), str("sig")
	if id == "" || action == "" || !verify(b.secret, sig, "action", id, action) {
		b.log.Warn("refused action with a forged or missing context", "post_id", req.PostId, "user_id", req.UserId)
		return ica.Errorf(ica.EFORBIDDEN, "this button was not made by ICA")
	}
	ctx := r.Context()
	a, err := b.store.Approval(ctx, id)
	if err != nil {
		return ephemeral(w, "Approval %s: %s", id, ica.ErrorMessage(err))
	}
	if a.Card.PostID == "" || req.PostId != a.Card.PostID {
		b.log.Warn("refused action from a post that is not the card", "approval_id", id, "post_id", req.PostId, "user_id", req.UserId)
		return ephemeral(w, "This button is not on the card ICA posted for approval %s; use the card in ~%s.", id, b.target(a.Target).Channel)
	}
	if me := b.botUser(); me != nil && req.UserId == me.Id {
		return ephemeral(w, "The ICA bot cannot decide approvals.")
	}
	var step string
	switch action {
	case actionApproveTechnical:
		step = ica.StepTechnical
	case actionApproveBusiness, actionApproveDeferred:
		step = ica.StepBusiness
	case actionReject:
		step = a.Step()
	default:
		return ephemeral(w, "Unknown action.")
	}
	if cur := a.Step(); cur == "" {
		// A stale card: show the truth.
		return b.replyCard(w, a, fmt.Sprintf("Approval %s is already %s%s.", a.ID, strings.ReplaceAll(a.Status, "_", " "), by(a)))
	} else if cur != step {
		return b.replyCard(w, a, fmt.Sprintf("Approval %s waits for its %s approval; the card is refreshed.", a.ID, cur))
	}
	if err := b.eligible(ctx, a, step, req.UserId, req.UserName); err != nil {
		return ephemeral(w, "You cannot decide this step: %s.", ica.ErrorMessage(err))
	}
	if action != actionReject && a.IsRequester(req.UserName) {
		return ephemeral(w, "You requested this deployment, so you cannot approve it.")
	}
	if step == ica.StepBusiness && action != actionReject && a.Technical != nil && (a.Technical.UserID == req.UserId || strings.EqualFold(a.Technical.Username, req.UserName)) {
		return ephemeral(w, "You gave the technical approval; the business approval must come from someone else.")
	}
	if action == actionReject || action == actionApproveDeferred || b.target(a.Target).CommentOnApprove {
		return b.openDialog(ctx, w, a, action, req)
	}
	n, err := b.decide(ctx, a.ID, step, ica.Transition{Action: action, By: ica.Decider{UserID: req.UserId, Username: req.UserName}, Via: "mattermost"}, req.PostId)
	if err != nil {
		return ephemeral(w, "Not recorded: %s", ica.ErrorMessage(err))
	}
	return b.replyCard(w, n, decidedText(step, n))
}

func by(a *ica.Approval) string {
	for _, d := range []*ica.Decision{a.Business, a.Rejection, a.Bypass, a.Technical} {
		if d != nil {
			return " by @" + d.Username
		}
	}
	return ""
}

// decide applies a transition, re-checking inside the transaction that the
// approval still waits for the same step on the same card, so of two racing
// clicks exactly one is applied.
func (b *Bot) decide(ctx context.Context, id, step string, t ica.Transition, postID string) (*ica.Approval, error) {
	return b.store.Transition(ctx, id, t, "mattermost:"+t.By.Username, func(cur *ica.Approval) error {
		if cur.Step() != step {
			return ica.Errorf(ica.ECONFLICT, "approval %s is already %s%s", cur.ID, strings.ReplaceAll(cur.Status, "_", " "), by(cur))
		}
		if postID != "" && cur.Card.PostID != postID {
			return ica.Errorf(ica.EFORBIDDEN, "that is not the card of approval %s", cur.ID)
		}
		return nil
	})
}

func (b *Bot) replyCard(w http.ResponseWriter, a *ica.Approval, text string) error {
	msg, props := b.renderCard(a, b.clock.Now())
	return actionReply(w, &model.PostActionIntegrationResponse{
		Update:        &model.Post{Message: msg, Props: props},
		EphemeralText: text,
	})
}

func (b *Bot) openDialog(ctx context.Context, w http.ResponseWriter, a *ica.Approval, action string, req model.PostActionIntegrationRequest) error {
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	st := dialogState{ApprovalID: a.ID, Action: action, UserID: req.UserId, Nonce: hex.EncodeToString(nonce),
		Expires: b.clock.Now().Add(b.cfg.DialogTTL).Unix()}
	d := model.Dialog{CallbackId: a.ID, State: b.encodeState(st), NotifyOnCancel: false}
	switch action {
	case actionReject:
		d.Title = "Reject " + a.ID
		d.IntroductionText = fmt.Sprintf("Reject the deployment of **%s** run %s to **%s**. The reason is recorded in the ledger and shown on the card.", a.PipelineName, a.RunID, a.Target)
		d.SubmitLabel = "Reject"
		d.Elements = []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "textarea", MinLength: 3, MaxLength: 2000, Placeholder: "Why must this not be deployed?"}}
	case actionApproveDeferred:
		deferredDialog(&d, a) // policy.go
	default:
		d.Title = "Approve " + a.ID
		d.IntroductionText = fmt.Sprintf("Give the %s approval for **%s** run %s to **%s**.", a.Step(), a.PipelineName, a.RunID, a.Target)
		d.SubmitLabel = "Approve"
		d.Elements = []model.DialogElement{{DisplayName: "Comment", Name: "comment", Type: "textarea", Optional: true, MaxLength: 2000}}
	}
	b.dialogs.add(st)
	// trigger_id lives 3 s: open the dialog now, inside the click.
	ctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if resp, err := b.client.API().OpenInteractiveDialog(ctx, model.OpenDialogRequest{TriggerId: req.TriggerId,
		URL: b.cfg.PublicURL + "/mattermost/dialogs", Dialog: d}); err != nil {
		b.dialogs.take(st.Nonce)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		b.log.Warn("could not open dialog", "approval_id", a.ID, "status", status, "err", err)
		return ephemeral(w, "ICA could not open the dialog (Mattermost answered %d); please click again.", status)
	}
	return actionReply(w, &model.PostActionIntegrationResponse{})
}

func dialogReply(w http.ResponseWriter, resp *model.SubmitDialogResponse) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// HandleDialog handles "POST /mattermost/dialogs". Any channel member can
// send any state here, so the state must be ICA's signature of a dialog ICA
// opened for this very user, not used before.
func (b *Bot) HandleDialog(w http.ResponseWriter, r *http.Request) error {
	var req model.SubmitDialogRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return ica.Errorf(ica.EINVALID, "malformed dialog submission")
	}
	if isIncidentID(req.CallbackId) {
		return b.handleIncidentDialog(w, r, req) // freeze override (incident.go)
	}
	st, err := b.decodeState(req.State)
	if err == nil && (st.UserID != req.UserId || st.ApprovalID != req.CallbackId) {
		err = ica.Errorf(ica.EFORBIDDEN, "this dialog was opened for someone else")
	}
	if err == nil {
		if _, ok := b.dialogs.peek(st.Nonce); !ok || b.clock.Now().Unix() > st.Expires {
			err = ica.Errorf(ica.EFORBIDDEN, "this dialog is no longer open; click the button on the card again")
		}
	}
	if err != nil {
		b.log.Warn("refused dialog submission", "user_id", req.UserId, "callback_id", req.CallbackId, "reason", ica.ErrorMessage(err))
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	if req.Cancelled {
		b.dialogs.take(st.Nonce)
		return dialogReply(w, &model.SubmitDialogResponse{})
	}
	text := func(k string) string { s, _ := req.Submission[k].(string); return strings.TrimSpace(s) }
	t := ica.Transition{Action: st.Action, Via: "mattermost"}
	if st.Action == actionReject {
		t.Comment = text("reason")
		if len(t.Comment) < 3 {
			return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "A reason is required."}})
		}
	} else {
		t.Comment = text("comment")
	}
	if st.Action == actionApproveDeferred {
		t.Action, t.NotBeforeLocal = actionApproveBusiness, text("not_before")
		if len(t.NotBeforeLocal) != 5 || t.NotBeforeLocal[2] != ':' {
			return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"not_before": "A time HH:MM, such as 22:00."}})
		}
	}
	if len(t.Comment) > 2000 {
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "At most 2000 characters."}})
	}
	if _, ok := b.dialogs.take(st.Nonce); !ok {
		return dialogReply(w, &model.SubmitDialogResponse{Error: "this dialog was already submitted"})
	}
	ctx := r.Context()
	a, err := b.store.Approval(ctx, st.ApprovalID)
	if err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	step := a.Step()
	if st.Action == actionApproveTechnical {
		step = ica.StepTechnical
	} else if st.Action == actionApproveBusiness || st.Action == actionApproveDeferred {
		step = ica.StepBusiness
	}
	username := ""
	if u, _, err := call(ctx, "look up the user", func(ctx context.Context) (*model.User, *model.Response, error) {
		return b.client.API().GetUser(ctx, req.UserId, "")
	}); err == nil {
		username = u.Username
	} else {
		return dialogReply(w, &model.SubmitDialogResponse{Error: "ICA could not reach Mattermost to check who you are; try again."})
	}
	if err := b.eligible(ctx, a, step, req.UserId, username); err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	t.By = ica.Decider{UserID: req.UserId, Username: username}
	if _, err := b.decide(ctx, a.ID, step, t, ""); err != nil {
		if ica.ErrorField(err) == "not_before" {
			return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"not_before": ica.ErrorMessage(err)}})
		}
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	return dialogReply(w, &model.SubmitDialogResponse{})
}
