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

// encodeState signs a dialog's state for this ledger.
func (b *Bot) encodeState(s dialogState) string {
	raw, _ := json.Marshal(s)
	body := base64.RawURLEncoding.EncodeToString(raw)
	return body + "." + sign(b.secret, "dialog", b.ledger(), body)
}

func (b *Bot) decodeState(state string) (dialogState, error) {
	var s dialogState
	body, sig, ok := strings.Cut(state, ".")
	if !ok || len(state) > 4096 || !verify(b.secret, sig, "dialog", b.ledger(), body) {
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

// refuse answers a refused callback: HTTP 200 with an ephemeral message (as
// Mattermost requires), nothing changed, a warning in the log.
func (b *Bot) refuse(w http.ResponseWriter, reason, text string, attrs ...any) error {
	b.log.Warn("refused Mattermost action", append([]any{"reason", reason}, attrs...)...)
	return ephemeral(w, "%s", text)
}

// HandleAction handles "POST /mattermost/actions": a click on a card
// button. Mattermost authenticates nothing but the trigger_id, so a click
// is checked in this order (DESIGN.md "Button callbacks and dialogs"): the
// trigger_id verifies, names user_id, is fresh and unused; the context's
// HMAC (this ledger, approval id, action); post_id is the card ICA posted;
// and the user, as GET /users/{id} describes them (never the body), may
// decide this step. A refused click changes nothing and gets HTTP 200 with
// an ephemeral explanation; no reply carries the signed buttons of a step
// the clicker could not decide already.
func (b *Bot) HandleAction(w http.ResponseWriter, r *http.Request) error {
	var req model.PostActionIntegrationRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return b.refuse(w, "malformed request body", "ICA could not read this click.", "remote", r.RemoteAddr)
	}
	ctx := r.Context()
	if err := b.Ready(ctx); err != nil {
		return b.refuse(w, "not connected to Mattermost: "+err.Error(), "ICA is not connected to Mattermost yet; nothing was changed, please try again in a minute.")
	}
	if _, ok := req.Context["incident_id"]; ok {
		return b.handleIncidentAction(w, r, req) // incident cards (incident.go)
	}
	attrs := []any{"post_id", clip(req.PostId, 40), "claimed_user_name", clip(req.UserName, 64)}
	u, err := b.Verify(ctx, "action", req.TriggerId, req.UserId, attrs...)
	if err != nil {
		return ephemeral(w, "%s.", ica.ErrorMessage(err))
	}
	attrs = append(attrs, "user_id", u.Id, "user_name", u.Username)
	str := func(k string) string { s, _ := req.Context[k].(string); return s }
	id, action, sig := str("approval_id"), str("action"), str("sig")
	if id == "" || action == "" || !verify(b.secret, sig, "action", b.ledger(), id, action) {
		if id != "" && action != "" && verify(b.secret, sig, "action", id, action) {
			// A card drawn before buttons named their ledger: redraw it.
			b.refreshCard(ctx, id, "legacy")
			return b.refuse(w, "button signed without the ledger id", "This card was drawn by an earlier version of ICA and is being redrawn; click again in a moment.", attrs...)
		}
		return b.refuse(w, "forged or missing button context", "This button was not made by this ICA; nothing was changed.", attrs...)
	}
	a, err := b.store.Approval(ctx, id)
	if err != nil {
		return ephemeral(w, "Approval %s: %s", id, ica.ErrorMessage(err))
	}
	attrs = append(attrs, "approval_id", id)
	if a.Card.PostID == "" || req.PostId != a.Card.PostID {
		return b.refuse(w, "click from a post that is not the card", fmt.Sprintf("This button is not on the card ICA posted for approval %s; use the card in ~%s.", id, b.target(a.Target).Channel), attrs...)
	}
	if me := b.botUser(); me != nil && u.Id == me.Id {
		return b.refuse(w, "the bot clicked", "The ICA bot cannot decide approvals.", attrs...)
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
		return b.refuse(w, "unknown action "+clip(action, 40), "Unknown action.", attrs...)
	}
	if cur := a.Step(); cur == "" {
		// A stale card: show the truth (a final card has no buttons).
		return b.replyCard(ctx, w, a, fmt.Sprintf("Approval %s is already %s%s.", a.ID, strings.ReplaceAll(a.Status, "_", " "), by(a)), true)
	} else if cur != step {
		return b.replyCard(ctx, w, a, fmt.Sprintf("Approval %s waits for its %s approval; the card is being refreshed.", a.ID, cur), true)
	}
	if err := b.eligible(ctx, a, step, u); err != nil {
		return b.refuse(w, "not an approver of this step", "You cannot decide this step: "+ica.ErrorMessage(err)+".", attrs...)
	}
	if action != actionReject {
		if req, err := b.isRequester(ctx, a, u); err != nil {
			return ephemeral(w, "%s.", ica.ErrorMessage(err))
		} else if req {
			return b.refuse(w, "the requester clicked approve", "You requested this deployment, so you cannot approve it.", attrs...)
		}
	}
	if step == ica.StepBusiness && action != actionReject && a.Technical != nil && a.Technical.UserID == u.Id {
		return b.refuse(w, "the technical approver clicked the business step", "You gave the technical approval; the business approval must come from someone else.", attrs...)
	}
	if action == actionReject || action == actionApproveDeferred || b.target(a.Target).CommentOnApprove {
		return b.openDialog(ctx, w, a, action, req.TriggerId, u)
	}
	n, err := b.decide(ctx, a.ID, step, ica.Transition{Action: action, By: ica.Decider{UserID: u.Id, Username: u.Username, Email: ica.NormalizeEmail(u.Email)}, ByEmail: u.Email, Via: "mattermost"}, req.PostId)
	if err != nil {
		return ephemeral(w, "Not recorded: %s", ica.ErrorMessage(err))
	}
	// The transition itself queued the card's redraw.
	return b.replyCard(ctx, w, n, decidedText(step, n), false)
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

// replyCard answers a click with text and, when the card's current state
// has no buttons, with the whole new card. A card that still has buttons
// carries signed contexts for its current step, which the clicker may not
// be allowed to decide: it is redrawn through the API instead (the outbox
// patches the post; Mattermost strips the contexts from what clients get),
// queued here when refresh is set.
func (b *Bot) replyCard(ctx context.Context, w http.ResponseWriter, a *ica.Approval, text string, refresh bool) error {
	resp := &model.PostActionIntegrationResponse{EphemeralText: text}
	if a.Final() {
		msg, props := b.renderCard(a, b.clock.Now())
		resp.Update = &model.Post{Message: msg, Props: props}
	} else if refresh {
		b.refreshCard(ctx, a.ID, fmt.Sprintf("v%d", a.Version))
	}
	return actionReply(w, resp)
}

// refreshCard queues a redraw of an approval's card (once per reason).
func (b *Bot) refreshCard(ctx context.Context, approvalID, reason string) {
	if err := b.store.Enqueue(ctx, ApprovalCardUpdate(approvalID, approvalID+":card:refresh:"+reason)); err != nil {
		b.log.Warn("could not queue a card refresh", "approval_id", approvalID, "err", err)
	}
}

// newNonce returns a random dialog nonce.
func newNonce() string {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	return hex.EncodeToString(n)
}

// openDialogFor opens a dialog for a verified click: its single-use state
// is stored (bound to the user) before the dialog is opened, so any replica
// can take the submission.
func (b *Bot) openDialogFor(ctx context.Context, w http.ResponseWriter, subject, action, triggerID string, u *model.User, d model.Dialog) error {
	st := dialogState{ApprovalID: subject, Action: action, UserID: u.Id, Nonce: newNonce(),
		Expires: b.clock.Now().Add(b.cfg.DialogTTL).Unix()}
	d.CallbackId, d.State = subject, b.encodeState(st)
	if err := b.store.AddDialogNonce(ctx, st.Nonce, u.Id, time.Unix(st.Expires, 0)); err != nil {
		b.log.Warn("could not store a dialog nonce", "subject", subject, "err", err)
		return ephemeral(w, "ICA could not open the dialog (%s); please click again.", ica.ErrorMessage(err))
	}
	// trigger_id lives 3 s: open the dialog now, inside the click.
	octx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if resp, err := b.client.API().OpenInteractiveDialog(octx, model.OpenDialogRequest{TriggerId: triggerID,
		URL: b.cfg.PublicURL + "/mattermost/dialogs", Dialog: d}); err != nil {
		_ = b.store.TakeDialogNonce(context.WithoutCancel(ctx), st.Nonce, u.Id)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		b.log.Warn("could not open dialog", "subject", subject, "status", status, "err", err)
		return ephemeral(w, "ICA could not open the dialog (Mattermost answered %d); please click again.", status)
	}
	return actionReply(w, &model.PostActionIntegrationResponse{})
}

func (b *Bot) openDialog(ctx context.Context, w http.ResponseWriter, a *ica.Approval, action, triggerID string, u *model.User) error {
	var d model.Dialog
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
	return b.openDialogFor(ctx, w, a.ID, action, triggerID, u, d)
}

func dialogReply(w http.ResponseWriter, resp *model.SubmitDialogResponse) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(resp)
}

// checkDialog checks a submission's state: ICA's signature for this ledger,
// opened for this very user and subject, and still open in the store.
func (b *Bot) checkDialog(ctx context.Context, req model.SubmitDialogRequest) (dialogState, error) {
	st, err := b.decodeState(req.State)
	if err != nil {
		return st, err
	}
	if st.UserID != req.UserId || st.ApprovalID != req.CallbackId {
		return st, ica.Errorf(ica.EFORBIDDEN, "this dialog was opened for someone else")
	}
	if b.clock.Now().Unix() > st.Expires {
		return st, ica.Errorf(ica.EFORBIDDEN, "this dialog is no longer open; click the button on the card again")
	}
	open, err := b.store.DialogNonceOpen(ctx, st.Nonce, st.UserID)
	if err != nil {
		return st, ica.Unavailable("ICA could not check this dialog; try again", err)
	}
	if !open {
		return st, ica.Errorf(ica.EFORBIDDEN, "this dialog is no longer open; click the button on the card again")
	}
	return st, nil
}

// HandleDialog handles "POST /mattermost/dialogs". Any channel member can
// send any state here, so the state must be ICA's signature of a dialog ICA
// opened (from a verified click) for this very user, still open in the
// store, and it is used once.
func (b *Bot) HandleDialog(w http.ResponseWriter, r *http.Request) error {
	var req model.SubmitDialogRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		b.log.Warn("refused dialog submission: malformed body", "remote", r.RemoteAddr)
		return dialogReply(w, &model.SubmitDialogResponse{Error: "ICA could not read this submission."})
	}
	if isIncidentID(req.CallbackId) {
		return b.handleIncidentDialog(w, r, req) // freeze override (incident.go)
	}
	ctx := r.Context()
	st, err := b.checkDialog(ctx, req)
	if err != nil {
		b.log.Warn("refused dialog submission", "user_id", clip(req.UserId, 40), "callback_id", clip(req.CallbackId, 40), "reason", ica.ErrorMessage(err))
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	if req.Cancelled {
		_ = b.store.TakeDialogNonce(ctx, st.Nonce, st.UserID)
		return dialogReply(w, &model.SubmitDialogResponse{})
	}
	if err := b.allowUser("dialog", st.UserID); err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	text := func(k string) string { s, _ := req.Submission[k].(string); return strings.TrimSpace(s) }
	t := ica.Transition{Action: st.Action, Via: "mattermost"}
	field := "comment"
	if st.Action == actionReject {
		field = "reason"
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
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{field: "At most 2000 characters."}})
	}
	if err := b.store.TakeDialogNonce(ctx, st.Nonce, st.UserID); err != nil {
		if ica.ErrorCode(err) == ica.ECONFLICT {
			return dialogReply(w, &model.SubmitDialogResponse{Error: "this dialog was already submitted"})
		}
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	u, err := b.user(ctx, st.UserID)
	if err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
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
	if err := b.eligible(ctx, a, step, u); err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	if st.Action != actionReject {
		if isReq, err := b.isRequester(ctx, a, u); err != nil {
			return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
		} else if isReq {
			return dialogReply(w, &model.SubmitDialogResponse{Error: "You requested this deployment, so you cannot approve it."})
		}
	}
	t.By, t.ByEmail = ica.Decider{UserID: u.Id, Username: u.Username, Email: ica.NormalizeEmail(u.Email)}, u.Email
	if _, err := b.decide(ctx, a.ID, step, t, ""); err != nil {
		if ica.ErrorField(err) == "not_before" {
			return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"not_before": ica.ErrorMessage(err)}})
		}
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	return dialogReply(w, &model.SubmitDialogResponse{})
}
