package bot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

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
			if q.UserId == b.botUser().Id && fmt.Sprint(q.GetProp(propIncidentID)) == inc.ID {
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
		np := &model.Post{ChannelId: chID, Message: text, PendingPostId: b.botUser().Id + ":" + inc.ID + ":" + fmt.Sprint(inc.Fired)}
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
		Footer:    "ICA · Azure Monitor · ledger-recorded",
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
	return msg, model.StringInterface{"attachments": []*model.MessageAttachment{att}, propIncidentID: inc.ID}
}

func (b *Bot) incidentButton(inc *ica.Incident, action, name, style string) *model.PostAction {
	return &model.PostAction{
		Id: "inc" + strings.ReplaceAll(action, "_", ""), Name: name, Type: model.PostActionTypeButton, Style: style,
		Integration: &model.PostActionIntegration{
			URL: b.cfg.PublicURL + "/mattermost/actions",
			Context: map[string]any{"incident_id": inc.ID, "action": action,
				"sig": sign(b.secret, "incident", inc.ID, action)},
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
	str := func(k string) string { s, _ := req.Context[k].(string); return s }
	id, action, sig := str("incident_id"), str("action"), str("sig")
	if id == "" || action == "" || !verify(b.secret, sig, "incident", id, action) {
		b.log.Warn("refused incident action with a forged or missing context", "post_id", req.PostId, "user_id", req.UserId)
		return ica.Errorf(ica.EFORBIDDEN, "this button was not made by ICA")
	}
	if b.incidents == nil {
		return ephemeral(w, "Incident cards are not enabled on this ICA.")
	}
	ctx := r.Context()
	inc, err := b.incidents.store.Incident(ctx, id)
	if err != nil {
		return ephemeral(w, "Incident %s: %s", id, ica.ErrorMessage(err))
	}
	if inc.Card.PostID == "" || req.PostId != inc.Card.PostID {
		b.log.Warn("refused incident action from a post that is not the card", "incident_id", id, "post_id", req.PostId, "user_id", req.UserId)
		return ephemeral(w, "This button is not on the card ICA posted for incident %s.", id)
	}
	if me := b.botUser(); me != nil && req.UserId == me.Id {
		return ephemeral(w, "The ICA bot cannot act on incidents.")
	}
	switch action {
	case incActAcknowledge, incActResolve:
		if inc.Final() || (action == incActAcknowledge && inc.Status != ica.IncidentOpen) {
			return b.replyIncidentCard(ctx, w, inc, fmt.Sprintf("Incident %s is already %s.", inc.ID, inc.Status))
		}
		if err := b.onCall(ctx, inc, req.UserId, req.UserName); err != nil {
			return ephemeral(w, "You cannot do this: %s.", ica.ErrorMessage(err))
		}
		t := ica.IncidentTransition{Action: action, By: ica.Decider{UserID: req.UserId, Username: req.UserName}, Via: "mattermost"}
		n, err := b.incidents.store.IncidentTransition(ctx, id, t, "mattermost:"+req.UserName, func(cur *ica.Incident) error {
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
		return b.replyIncidentCard(ctx, w, n, text)
	case incActOverride:
		if !b.isCommander(req.UserName) {
			return ephemeral(w, "Only incident commanders can override a deployment freeze.")
		}
		if inc.Final() || len(b.frozenTargets(inc)) == 0 {
			return b.replyIncidentCard(ctx, w, inc, fmt.Sprintf("Incident %s freezes no deployment.", inc.ID))
		}
		if b.override(ctx, inc) != nil {
			return b.replyIncidentCard(ctx, w, inc, "The freeze of this incident is already overridden.")
		}
		return b.openOverrideDialog(ctx, w, inc, req)
	}
	return ephemeral(w, "Unknown action.")
}

func (b *Bot) replyIncidentCard(ctx context.Context, w http.ResponseWriter, inc *ica.Incident, text string) error {
	msg, props := b.renderIncidentCard(ctx, inc)
	return actionReply(w, &model.PostActionIntegrationResponse{
		Update:        &model.Post{Message: msg, Props: props},
		EphemeralText: text,
	})
}

func (b *Bot) isCommander(username string) bool {
	return username != "" && slices.ContainsFunc(b.incidents.cfg.Commanders, func(c string) bool { return strings.EqualFold(c, username) })
}

// onCall checks that the user belongs to the on-call group: a named
// on-call user, or a member of the on-call channel (by default the channel
// the card is in).
func (b *Bot) onCall(ctx context.Context, inc *ica.Incident, userID, username string) error {
	pol := b.incidents.cfg.OnCall
	for _, u := range pol.Usernames {
		if strings.EqualFold(u, username) {
			return nil
		}
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
		member, ok := b.members.get(chID, userID)
		if !ok {
			_, resp, err := b.client.API().GetChannelMember(ctx, chID, userID, "")
			switch {
			case err == nil:
				member = true
			case resp != nil && (resp.StatusCode == 404 || resp.StatusCode == 403):
				member = false
			default:
				return ica.Unavailable("could not check the on-call group; try again", err)
			}
			b.members.put(chID, userID, member)
		}
		if member {
			return nil
		}
	}
	return ica.Errorf(ica.EFORBIDDEN, "@%s is not in the on-call group", username)
}

func (b *Bot) openOverrideDialog(ctx context.Context, w http.ResponseWriter, inc *ica.Incident, req model.PostActionIntegrationRequest) error {
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	st := dialogState{ApprovalID: inc.ID, Action: incActOverride, UserID: req.UserId, Nonce: hex.EncodeToString(nonce),
		Expires: b.clock.Now().Add(b.cfg.DialogTTL).Unix()}
	targets := strings.Join(b.frozenTargets(inc), ", ")
	d := model.Dialog{CallbackId: inc.ID, State: b.encodeState(st), Title: "Override freeze",
		IntroductionText: fmt.Sprintf("Lift the deployment freeze of **%s** caused by %s incident %s. New approvals for %s will be accepted while it stays open. Your name and reason are recorded in the ledger.",
			targets, inc.Severity, inc.ID, targets),
		SubmitLabel: "Override",
		Elements:    []model.DialogElement{{DisplayName: "Reason", Name: "reason", Type: "textarea", MinLength: 3, MaxLength: 2000, Placeholder: "Why must deployments go ahead during this incident?"}}}
	b.dialogs.add(st)
	ctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if resp, err := b.client.API().OpenInteractiveDialog(ctx, model.OpenDialogRequest{TriggerId: req.TriggerId,
		URL: b.cfg.PublicURL + "/mattermost/dialogs", Dialog: d}); err != nil {
		b.dialogs.take(st.Nonce)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		b.log.Warn("could not open dialog", "incident_id", inc.ID, "status", status, "err", err)
		return ephemeral(w, "ICA could not open the dialog (Mattermost answered %d); please click again.", status)
	}
	return actionReply(w, &model.PostActionIntegrationResponse{})
}

// handleIncidentDialog handles the freeze override dialog: the state must
// be ICA's signature of a dialog ICA opened for this very user, unused.
func (b *Bot) handleIncidentDialog(w http.ResponseWriter, r *http.Request, req model.SubmitDialogRequest) error {
	st, err := b.decodeState(req.State)
	if err == nil && (st.UserID != req.UserId || st.ApprovalID != req.CallbackId || st.Action != incActOverride) {
		err = ica.Errorf(ica.EFORBIDDEN, "this dialog was opened for someone else")
	}
	if err == nil {
		if _, ok := b.dialogs.peek(st.Nonce); !ok || b.clock.Now().Unix() > st.Expires {
			err = ica.Errorf(ica.EFORBIDDEN, "this dialog is no longer open; click the button on the card again")
		}
	}
	if err == nil && b.incidents == nil {
		err = ica.Errorf(ica.EFORBIDDEN, "incident cards are not enabled")
	}
	if err != nil {
		b.log.Warn("refused dialog submission", "user_id", req.UserId, "callback_id", req.CallbackId, "reason", ica.ErrorMessage(err))
		return dialogReply(w, &model.SubmitDialogResponse{Error: ica.ErrorMessage(err)})
	}
	if req.Cancelled {
		b.dialogs.take(st.Nonce)
		return dialogReply(w, &model.SubmitDialogResponse{})
	}
	reason, _ := req.Submission["reason"].(string)
	reason = strings.TrimSpace(reason)
	if len(reason) < 3 {
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "A reason is required."}})
	}
	if len(reason) > 2000 {
		return dialogReply(w, &model.SubmitDialogResponse{Errors: map[string]string{"reason": "At most 2000 characters."}})
	}
	if _, ok := b.dialogs.take(st.Nonce); !ok {
		return dialogReply(w, &model.SubmitDialogResponse{Error: "this dialog was already submitted"})
	}
	ctx := r.Context()
	u, _, err := call(ctx, "look up the user", func(ctx context.Context) (*model.User, *model.Response, error) {
		return b.client.API().GetUser(ctx, req.UserId, "")
	})
	if err != nil {
		return dialogReply(w, &model.SubmitDialogResponse{Error: "ICA could not reach Mattermost to check who you are; try again."})
	}
	if !b.isCommander(u.Username) {
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
