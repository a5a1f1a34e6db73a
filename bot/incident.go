package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// Incident cards: one Mattermost post per incident, coloured by severity,
// saying what fired where and when, with Acknowledge and Resolve buttons for
// the on-call group (which act in PagerDuty too, through the store's
// notifier) and an "Override freeze" button for incident commanders while
// the incident freezes deployments. The card is re-rendered from the
// incident on every change, so Azure's Resolved updates it as well.

// KindIncidentCard posts the incident's card, or updates it once posted.
const KindIncidentCard = "incident.card"

// Incident button actions (carried in the signed context).
const (
	incActAcknowledge = ica.IncidentActAcknowledge
	incActResolve     = ica.IncidentActResolve
	incActOverride    = "override_freeze"
)

// propIncidentID marks incident cards so a card can be found after a crash.
const propIncidentID = "ica_incident_id"

// kindIncidentCardPosted is the ledger kind of a posted card (store.KindIncidentCard).
const kindIncidentCardPosted = ica.KindIncident + "card_posted"

// Severity colours: red, orange, amber, blue, grey; resolved is green.
var severityColor = map[string]string{
	ica.Sev0: "#C8102E",
	ica.Sev1: "#F26B1D",
	ica.Sev2: "#F2A900",
	ica.Sev3: "#1F78D1",
	ica.Sev4: "#8A8A8A",
}

const resolvedColor = "#2E8B57"

// IncidentConfig configures incident cards.
type IncidentConfig struct {
	// Channel is the incident channel (ICA_INCIDENT_CHANNEL), used when the
	// alert's route names none.
	Channel string
	// OnCall may acknowledge and resolve. Empty: the members of the channel
	// the card is in.
	OnCall StepPolicy
	// Commanders may override a deployment freeze (ICA_INCIDENT_COMMANDERS).
	Commanders []string
}

// IncidentStore is what incident cards need from the ledger.
type IncidentStore interface {
	Incident(ctx context.Context, id string) (*ica.Incident, error)
	IncidentTransition(ctx context.Context, id string, t ica.IncidentTransition, actor string, check func(inc *ica.Incident) error) (*ica.Incident, error)
	UpdateIncident(ctx context.Context, id, actor string, fn func(inc *ica.Incident) (string, any, []*ica.OutboxMessage, error)) (*ica.Incident, error)
	IncidentOverride(ctx context.Context, id string) (*ica.Decision, error)
	OverrideFreeze(ctx context.Context, id string, d ica.Decision, actor string) (*ica.Incident, error)
}

// FreezeInfo tells cards about deployment freezes (cmd/ica adapts the
// freeze package and the store to it).
type FreezeInfo interface {
	// ApprovalWarning is the warning line of a pending approval's card, or
	// "" when its target is not frozen.
	ApprovalWarning(a *ica.Approval) string
	// IncidentFreezes returns the targets a severe unresolved incident
	// freezes (overrides aside), or nil.
	IncidentFreezes(inc *ica.Incident) []string
}

// incidentCards is the bot's incident state, set by EnableIncidents.
type incidentCards struct {
	cfg    IncidentConfig
	store  IncidentStore
	freeze FreezeInfo
}

// EnableIncidents turns on incident cards and buttons; fz (may be nil) adds
// freeze warnings to approval cards and the override button to incident cards.
func (b *Bot) EnableIncidents(cfg IncidentConfig, st IncidentStore, fz FreezeInfo) {
	b.incidents = &incidentCards{cfg: cfg, store: st, freeze: fz}
}

// freezeWarning is the "Deployment freeze" field of an approval card.
func (b *Bot) freezeWarning(a *ica.Approval) []*model.MessageAttachmentField {
	if b.incidents == nil || b.incidents.freeze == nil || a.Final() {
		return nil
	}
	if w := b.incidents.freeze.ApprovalWarning(a); w != "" {
		return []*model.MessageAttachmentField{{Title: "Deployment freeze", Value: show(w)}}
	}
	return nil
}

type incidentPayload struct {
	IncidentID string `json:"incident_id"`
	Channel    string `json:"channel,omitempty"`
	Quiet      bool   `json:"quiet,omitempty"`
}

// IncidentCardMessages returns the card message for an incident change:
// post the card (for a new incident) or update it. channel and quiet come
// from the alert's route. It does no I/O (it runs in the store's
// transaction).
func IncidentCardMessages(cause string, inc *ica.Incident, channel string, quiet bool) []*ica.OutboxMessage {
	raw, _ := json.Marshal(incidentPayload{IncidentID: inc.ID, Channel: channel, Quiet: quiet})
	return []*ica.OutboxMessage{{Destination: Destination, Kind: KindIncidentCard,
		Key:      fmt.Sprintf("%s:card:v%d:f%d:%s", inc.ID, inc.Version, inc.Fired, cause),
		OrderKey: "inc-card:" + inc.ID, Payload: raw}}
}

// ApprovalCardUpdate returns a card.update for an approval (a freeze that
// starts or ends changes its warning line). key makes it idempotent.
func ApprovalCardUpdate(approvalID, key string) *ica.OutboxMessage {
	return message(KindCardUpdate, key, "card:"+approvalID, cardPayload{ApprovalID: approvalID})
}

// IsIncidentKind reports whether an outbox kind is an incident card's.
func IsIncidentKind(kind string) bool { return strings.HasPrefix(kind, "incident.") }

// deliverIncident posts or updates an incident card.
func (b *Bot) deliverIncident(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	if b.incidents == nil {
		return false, errors.New("incident cards are not enabled")
	}
	var p incidentPayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return false, fmt.Errorf("outbox message %d: bad payload: %w", msg.ID, err)
	}
	st := b.incidents.store
	inc, err := st.Incident(ctx, p.IncidentID)
	if err != nil {
		return ica.ErrorCode(err) != ica.ENOTFOUND, err
	}
	if inc.Card.PostID != "" {
		return b.patchIncidentCard(ctx, inc)
	}
	chName := p.Channel
	if chName == "" {
		chName = b.incidents.cfg.Channel
	}
	chID, retry, err := b.lookupChannel(ctx, chName)
	if err != nil {
		return retry, err
	}
	api := b.client.API()
	var post *model.Post
	if msg.Attempts > 0 {
		// An earlier attempt may have posted the card before its answer was lost.
		list, retry, err := call(ctx, "list recent posts", func(ctx context.Context) (*model.PostList, *model.Response, error) {
			return api.GetPostsForChannel(ctx, chID, 0, 200, "", false, false)
		})
		if err != nil {
			return retry, err
		}
		for _, q := range list.Posts {
			if b.isOurCard(q, propIncidentID, inc.ID) {
				post = q
				break
			}
		}
	}
	if post == nil {
		text, props := b.renderIncidentCard(ctx, inc)
		if !p.Quiet && !inc.Final() {
			text = "@here " + text
		}
		np := &model.Post{ChannelId: chID, Message: text, PendingPostId: b.pendingID(inc.ID, msg)}
		np.SetProps(props)
		created, retry, err := call(ctx, "post the incident card", func(ctx context.Context) (*model.Post, *model.Response, error) {
			return api.CreatePost(ctx, np)
		})
		if err != nil {
			return retry, err
		}
		post = created
	}
	_, err = st.UpdateIncident(ctx, inc.ID, "mattermost", func(cur *ica.Incident) (string, any, []*ica.OutboxMessage, error) {
		cur.Card = ica.CardRef{ChannelID: chID, PostID: post.Id}
		var msgs []*ica.OutboxMessage
		if cur.Version != inc.Version {
			// The incident changed while its card was being posted.
			msgs = IncidentCardMessages("posted", cur, "", true)
		}
		return kindIncidentCardPosted, map[string]string{"post_id": post.Id, "channel_id": chID}, msgs, nil
	})
	if err != nil {
		return true, fmt.Errorf("record incident card %s: %w", post.Id, err)
	}
	return false, nil
}

func (b *Bot) patchIncidentCard(ctx context.Context, inc *ica.Incident) (bool, error) {
	text, props := b.renderIncidentCard(ctx, inc)
	patch := &model.PostPatch{Message: &text, Props: &props}
	_, retry, err := call(ctx, "update the incident card", func(ctx context.Context) (*model.Post, *model.Response, error) {
		return b.client.API().PatchPost(ctx, inc.Card.PostID, patch)
	})
	return retry, err
}

// lookupChannel finds a channel of the team by name, remembering it.
func (b *Bot) lookupChannel(ctx context.Context, name string) (string, bool, error) {
	if name == "" {
		return "", false, errors.New("no channel is configured for this message (ICA_INCIDENT_CHANNEL / ICA_FINANCE_CHANNEL)")
	}
	if id := b.channelID(name); id != "" {
		return id, false, nil
	}
	b.mu.RLock()
	team := b.teamID
	b.mu.RUnlock()
	ch, retry, err := call(ctx, "find channel "+name, func(ctx context.Context) (*model.Channel, *model.Response, error) {
		return b.client.API().GetChannelByName(ctx, name, team, "")
	})
	if err != nil {
		return "", retry, fmt.Errorf("%w (does channel %q exist, and is the bot a member?)", err, name)
	}
	b.mu.Lock()
	b.channels[name] = ch.Id
	b.mu.Unlock()
	return ch.Id, false, nil
}

func (b *Bot) override(ctx context.Context, inc *ica.Incident) *ica.Decision {
	if inc.Final() {
		return nil
	}
	d, err := b.incidents.store.IncidentOverride(ctx, inc.ID)
	if err != nil {
		b.log.Warn("could not read the freeze override", "incident_id", inc.ID, "err", err)
		return nil
	}
	return d
}

func (b *Bot) frozenTargets(inc *ica.Incident) []string {
	if b.incidents.freeze == nil || inc.Final() {
		return nil
	}
	return b.incidents.freeze.IncidentFreezes(inc)
}

var incidentWords = map[string]string{
	ica.IncidentOpen:         "open",
	ica.IncidentAcknowledged: "acknowledged",
	ica.IncidentResolved:     "resolved",
}

// renderIncidentCard builds the whole card for the incident's current state,
// always with complete props (Mattermost keeps old buttons otherwise).
func (b *Bot) renderIncidentCard(ctx context.Context, inc *ica.Incident) (string, model.StringInterface) {
	what := show(firstOf(inc.Rule, inc.MonitoringService, "Azure Monitor alert"))
	where := show(resourceName(inc))
	fields := []*model.MessageAttachmentField{
		{Title: "Severity", Value: inc.Severity, Short: true},
		{Title: "Status", Value: incidentWords[inc.Status], Short: true},
		{Title: "Fired", Value: stamp(inc.FiredAt), Short: true},
	}
	if where != "" {
		fields = append(fields, &model.MessageAttachmentField{Title: "Resource", Value: where, Short: true})
	}
	if len(inc.ResourceGroups) > 0 {
		fields = append(fields, &model.MessageAttachmentField{Title: "Resource group", Value: show(strings.Join(inc.ResourceGroups, ", ")), Short: true})
	}
	if len(inc.Subscriptions) > 0 {
		fields = append(fields, &model.MessageAttachmentField{Title: "Subscription", Value: show(strings.Join(inc.Subscriptions, ", ")), Short: true})
	}
	if sig := strings.Trim(inc.SignalType+" · "+inc.MonitoringService, " ·"); sig != "" {
		fields = append(fields, &model.MessageAttachmentField{Title: "Signal", Value: show(sig), Short: true})
	}
	if inc.Description != "" {
		fields = append(fields, &model.MessageAttachmentField{Title: "Description", Value: show(inc.Description)})
	}
	if inc.Acknowledged != nil {
		fields = append(fields, &model.MessageAttachmentField{Title: "Acknowledged", Value: decisionText(inc.Acknowledged)})
	}
	if inc.Resolution != nil {
		v := decisionText(inc.Resolution)
		if inc.Resolution.Via == ica.ViaAzureMonitor {
			v = "Azure Monitor: the alert condition cleared at " + stamp(inc.Resolution.At)
		}
		fields = append(fields, &model.MessageAttachmentField{Title: "Resolved", Value: v})
	}
	if inc.Paged {
		fields = append(fields, &model.MessageAttachmentField{Title: "PagerDuty", Value: "paged (dedup_key `" + show(inc.PagerDutyKey) + "`); the buttons act in PagerDuty too", Short: false})
	}
	targets := b.frozenTargets(inc)
	ov := b.override(ctx, inc)
	if len(targets) > 0 {
		v := fmt.Sprintf(":no_entry: Deployments to **%s** are frozen while this incident is open.", strings.Join(targets, ", "))
		if ov != nil {
			v = fmt.Sprintf("Freeze of %s overridden by %s", strings.Join(targets, ", "), decisionText(ov))
		}
		fields = append(fields, &model.MessageAttachmentField{Title: "Deployment freeze", Value: v})
	}
	color := severityColor[inc.Severity]
	if inc.Final() {
		color = resolvedColor
	}
	title := fmt.Sprintf("[%s] %s", inc.Severity, what)
	if where != "" && !strings.EqualFold(where, what) {
		title += " on " + where
	}
	att := &model.MessageAttachment{
		Fallback:  fmt.Sprintf("Incident %s: %s, %s", inc.ID, title, incidentWords[inc.Status]),
		Color:     color,
		Title:     title,
		TitleLink: show(inc.PortalLink),
		Text:      fmt.Sprintf("**Status:** %s · incident %s", incidentWords[inc.Status], inc.ID),
		Fields:    fields,
		Footer:    b.footer("Azure Monitor · ledger-recorded"),
	}
	if inc.PortalLink != "" {
		att.Text += fmt.Sprintf(" · [Azure portal](%s)", show(inc.PortalLink))
	}
	switch inc.Status {
	case ica.IncidentOpen:
		att.Actions = []*model.PostAction{b.incidentButton(inc, incActAcknowledge, "Acknowledge", "primary"), b.incidentButton(inc, incActResolve, "Resolve", "success")}
	case ica.IncidentAcknowledged:
		att.Actions = []*model.PostAction{b.incidentButton(inc, incActResolve, "Resolve", "success")}
	}
	if len(targets) > 0 && ov == nil && len(b.incidents.cfg.Commanders) > 0 {
		att.Actions = append(att.Actions, b.incidentButton(inc, incActOverride, "Override freeze", "danger"))
	}
	msg := fmt.Sprintf("**%s incident**: %s: %s", inc.Severity, title, incidentWords[inc.Status])
	return msg, model.StringInterface{"attachments": []*model.MessageAttachment{att}, propIncidentID: inc.ID, propLedgerID: b.ledger()}
}

func (b *Bot) incidentButton(inc *ica.Incident, action, name, style string) *model.PostAction {
	return &model.PostAction{
		Id: "inc" + strings.ReplaceAll(action, "_", ""), Name: name, Type: model.PostActionTypeButton, Style: style,
		Integration: &model.PostActionIntegration{
			URL: b.cfg.PublicURL + "/mattermost/actions",
			Context: map[string]any{"incident_id": inc.ID, "action": action,
				"sig": sign(b.secret, "incident", b.ledger(), inc.ID, action)},
		},
	}
}

func resourceName(inc *ica.Incident) string {
	if len(inc.Resources) == 0 {
		return ""
	}
	name := path.Base(strings.TrimRight(inc.Resources[0], "/"))
	if name == "." || name == "/" {
		return inc.Resources[0]
	}
	if len(inc.Resources) > 1 {
		name += fmt.Sprintf(" (+%d)", len(inc.Resources)-1)
	}
	return name
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// isIncidentID tells incident dialogs from approval dialogs by callback id.
func isIncidentID(id string) bool { return strings.HasPrefix(id, "inc-") }

// handleIncidentAction handles a click on an incident card's button; see
// HandleAction for what a click proves.
func (b *Bot) handleIncidentAction(w http.ResponseWriter, r *http.Request, req model.PostActionIntegrationRequest) error {
	ctx := r.Context()
	attrs := []any{"post_id", clip(req.PostId, 40), "claimed_user_name", clip(req.UserName, 64)}
	u, err := b.Verify(ctx, "incident action", req.TriggerId, req.UserId, attrs...)
	if err != nil {
		return ephemeral(w, "%s.", ica.ErrorMessage(err))
	}
	attrs = append(attrs, "user_id", u.Id, "user_name", u.Username)
	str := func(k string) string { s, _ := req.Context[k].(string); return s }
	id, action, sig := str("incident_id"), str("action"), str("sig")
	if id == "" || action == "" || !verify(b.secret, sig, "incident", b.ledger(), id, action) {
		if id != "" && action != "" && verify(b.secret, sig, "incident", id, action) && b.incidents != nil {
			// A card drawn before buttons named their ledger: redraw it.
			if inc, err := b.incidents.store.Incident(ctx, id); err == nil {
				_ = b.store.Enqueue(ctx, IncidentCardMessages("refresh-legacy", inc, "", true)...)
			}
			return b.refuse(w, "incident button signed without the ledger id", "This card was drawn by an earlier version of ICA and is being redrawn; click again in a moment.", attrs...)
		}
		return b.refuse(w, "forged or missing incident button context", "This button was not made by this ICA; nothing was changed.", attrs...)
	}
	if b.incidents == nil {
		return ephemeral(w, "Incident cards are not enabled on this ICA.")
	}
	inc, err := b.incidents.store.Incident(ctx, id)
	if err != nil {
		return ephemeral(w, "Incident %s: %s", id, ica.ErrorMessage(err))
	}
	attrs = append(attrs, "incident_id", id)
	if inc.Card.PostID == "" || req.PostId != inc.Card.PostID {
		return b.refuse(w, "incident click from a post that is not the card", fmt.Sprintf("This button is not on the card ICA posted for incident %s.", id), attrs...)
	}
	if me := b.botUser(); me != nil && u.Id == me.Id {
		return b.refuse(w, "the bot clicked", "The ICA bot cannot act on incidents.", attrs...)
	}
	switch action {
	case incActAcknowledge, incActResolve:
		if inc.Final() || (action == incActAcknowledge && inc.Status != ica.IncidentOpen) {
			return b.replyIncidentCard(ctx, w, inc, fmt.Sprintf("Incident %s is already %s.", inc.ID, inc.Status), true)
		}
		if err := b.onCall(ctx, inc, u); err != nil {
			return b.refuse(w, "not on call", "You cannot do this: "+ica.ErrorMessage(err)+".", attrs...)
		}
		t := ica.IncidentTransition{Action: action, By: ica.Decider{UserID: u.Id, Username: u.Username}, Via: "mattermost"}
		n, err := b.incidents.store.IncidentTransition(ctx, id, t, "mattermost:"+u.Username, func(cur *ica.Incident) error {
			if cur.Card.PostID != req.PostId {
				return ica.Errorf(ica.EFORBIDDEN, "that is not the card of incident %s", cur.ID)
			}
			return nil
		})
		if err != nil {
			return ephemeral(w, "Not recorded: %s", ica.ErrorMessage(err))
		}
		done := "acknowledged"
		if action == incActResolve {
			done = "resolved"
		}
		text := fmt.Sprintf("You %s incident %s. It is recorded in the ledger.", done, n.ID)
		if n.Paged {
			text += " PagerDuty is told too."
		}
		return b.replyIncidentCard(ctx, w, n, text, false) // the transition queued the redraw
	case incActOverride:
		if !b.isCommander(ctx, u) {
			return b.refuse(w, "not an incident commander", "Only incident commanders can override a deployment freeze.", attrs...)
		}
		if inc.Final() || len(b.frozenTargets(inc)) == 0 {
			return b.replyIncidentCard(ctx, w, inc, fmt.Sprintf("Incident %s freezes no deployment.", inc.ID), true)
		}
		if b.override(ctx, inc) != nil {
			return b.replyIncidentCard(ctx, w, inc, "The freeze of this incident is already overridden.", true)
		}
		return b.openOverrideDialog(ctx, w, inc, req.TriggerId, u)
	}
	return b.refuse(w, "unknown incident action "+clip(action, 40), "Unknown action.", attrs...)
}

// replyIncidentCard answers with text and, when the card has no buttons
// left, the whole new card; a card with buttons is redrawn through the API
// (see replyCard: no reply carries the signed buttons of a step the clicker
// could not take), queued here when refresh is set.
func (b *Bot) replyIncidentCard(ctx context.Context, w http.ResponseWriter, inc *ica.Incident, text string, refresh bool) error {
	resp := &model.PostActionIntegrationResponse{EphemeralText: text}
	msg, props := b.renderIncidentCard(ctx, inc)
	switch {
	case !hasActions(props):
		resp.Update = &model.Post{Message: msg, Props: props}
	case refresh:
		if err := b.store.Enqueue(ctx, IncidentCardMessages(fmt.Sprintf("refresh-v%d", inc.Version), inc, "", true)...); err != nil {
			b.log.Warn("could not queue an incident card refresh", "incident_id", inc.ID, "err", err)
		}
	}
	return actionReply(w, resp)
}

// hasActions reports whether rendered props carry buttons.
func hasActions(props model.StringInterface) bool {
	atts, _ := props["attachments"].([]*model.MessageAttachment)
	for _, a := range atts {
		if len(a.Actions) > 0 {
			return true
		}
	}
	return false
}

// isCommander reports whether u is a configured incident commander, by the
// user id the name resolved to.
func (b *Bot) isCommander(ctx context.Context, u *model.User) bool {
	return b.namedUser(ctx, b.incidents.cfg.Commanders, u)
}

// onCall checks that the user belongs to the on-call group: a named
// on-call user (by resolved id), or a member of the on-call channel (by
// default the channel the card is in).
func (b *Bot) onCall(ctx context.Context, inc *ica.Incident, u *model.User) error {
	pol := b.incidents.cfg.OnCall
	if b.namedUser(ctx, pol.Usernames, u) {
		return nil
	}
	chID := inc.Card.ChannelID
	if pol.Channel != "" {
		id, _, err := b.lookupChannel(ctx, pol.Channel)
		if err != nil {
			return ica.Unavailable("could not find the on-call channel ~"+pol.Channel+"; try again", err)
		}
		chID = id
	} else if len(pol.Usernames) > 0 {
		chID = ""
	}
	if chID != "" {
		member, err := b.isMember(ctx, chID, u.Id)
		if err != nil {
			return ica.Unavailable("could not check the on-call group; try again", err)
		}
		if member {
			return nil
		}
	}
	return ica.Errorf(ica.EFORBIDDEN, "@%s is not in the on-call group", u.Username)
}

func (b *Bot) openOverrideDialog(ctx context.Context, w http.ResponseWriter, inc *ica.Incident, triggerID string, u *model.User) error {
	targets := strings.Join(b.frozenTargets(inc), ", ")
	d := model.Dialog{Title: "Override freeze",
		IntroductionText: fmt.Sprintf("Lift the deployment freeze of **%s** caused by %s incident %s. New approvals for %s will be accepted while it stays open. Your name and reason are recorded in the ledger.",
			targets, inc.Severity, inc.ID, targets),
		SubmitLabel: "Override",
		Elements:    []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "textarea", MinLength: 3, MaxLength: 2000, Placeholder: "Why must deployments go ahead during this incident?"}}}
	return b.openDialogFor(ctx, w, inc.ID, incActOverride, triggerID, u, d)
}

// handleIncidentDialog handles the freeze override dialog: the state must
// be ICA's signature of a dialog ICA opened for this very user, still open.
func (b *Bot) handleIncidentDialog(w http.ResponseWriter, r *http.Request, req model.SubmitDialogRequest) error {
	ctx := r.Context()
	st, err := b.checkDialog(ctx, req)
	if err == nil && st.Action != incActOverride {
		err = ica.Errorf(ica.EFORBIDDEN, "this dialog was opened for something else")
	}
	if err == nil && b.incidents == nil {
		err = ica.Errorf(ica.EFORBIDDEN, "incident cards are not enabled")
	}
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
	reason, _ := req.Submission["reason"].(string)
	reason = strings.TrimSpace(reason)
	if len(reason) < 3 {
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "A reason is required."}})
	}
	if len(reason) > 2000 {
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "At most 2000 characters."}})
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
	if !b.isCommander(ctx, u) {
		return dialogReply(w, &model.SubmitDialogResponse{Error: "Only incident commanders can override a deployment freeze."})
	}
	d := ica.Decision{Decider: ica.Decider{UserID: u.Id, Username: u.Username}, Comment: reason, Via: "mattermost"}
	if _, err := b.incidents.store.OverrideFreeze(ctx, st.ApprovalID, d, "mattermost:"+u.Username); err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	b.log.Warn("DEPLOYMENT FREEZE OVERRIDDEN", "incident_id", st.ApprovalID, "by", u.Username, "reason", reason)
	return dialogReply(w, &model.SubmitDialogResponse{})
}

// IncidentCardLink returns the permalink of an incident's card, or "".
func (b *Bot) IncidentCardLink(inc *ica.Incident) string {
	if inc.Card.PostID == "" {
		return ""
	}
	return b.permalink(inc.Card.PostID)
}
