package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

var _ ica.Deliverer = (*Bot)(nil)

var errNotReady = errors.New("not connected to Mattermost yet")

// Deliver implements ica.Deliverer for the "mattermost" destination.
func (b *Bot) Deliver(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	if err := b.Ready(ctx); err != nil {
		return true, &ica.RetryAfterError{After: 5 * time.Second, Err: fmt.Errorf("%w: %v", errNotReady, err)}
	}
	if IsIncidentKind(msg.Kind) {
		return b.deliverIncident(ctx, msg) // incident cards (incident.go)
	}
	if msg.Kind == KindBudgetNotice {
		return b.deliverBudgetNotice(ctx, msg) // Azure budgets (budget.go)
	}
	if msg.Kind == KindCheckpointPost {
		return b.deliverCheckpoint(ctx, msg) // checkpoint.go
	}
	var p cardPayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return false, fmt.Errorf("outbox message %d: bad payload: %w", msg.ID, err)
	}
	a, err := b.store.Approval(ctx, p.ApprovalID)
	if err != nil {
		return ica.ErrorCode(err) != ica.ENOTFOUND, err
	}
	switch msg.Kind {
	case KindCardCreate:
		return b.createCard(ctx, msg, a)
	case KindCardUpdate:
		return b.updateCard(ctx, a)
	case KindNotify:
		return b.fanOut(ctx, a, p)
	case KindDM:
		return b.sendDM(ctx, msg, a, p)
	case KindAnnounce:
		return b.announce(ctx, a, p, b.target(a.Target).Channel)
	case KindFinance:
		if b.cfg.FinanceChannel == "" {
			return false, nil
		}
		return b.announce(ctx, a, p, b.cfg.FinanceChannel)
	}
	return false, fmt.Errorf("unknown mattermost message kind %q", msg.Kind)
}

// createCard posts the card once. A retry first looks for a card it may have
// posted before a crash or a lost answer, so a card never appears twice.
func (b *Bot) createCard(ctx context.Context, msg *ica.OutboxMessage, a *ica.Approval) (bool, error) {
	if a.Card.PostID != "" {
		return false, nil
	}
	chName := b.target(a.Target).Channel
	chID := b.channelID(chName)
	if chID == "" {
		return false, fmt.Errorf("approval channel %q is unknown", chName)
	}
	api := b.client.API()
	var post *model.Post
	if msg.Attempts > 0 {
		list, retry, err := call(ctx, "list recent posts", func(ctx context.Context) (*model.PostList, *model.Response, error) {
			return api.GetPostsForChannel(ctx, chID, 0, 200, "", false, false)
		})
		if err != nil {
			return retry, err
		}
		for _, p := range list.Posts {
			if b.isOurCard(p, propApprovalID, a.ID) {
				post = p
				break
			}
		}
	}
	if post == nil {
		text, props := b.renderCard(a, b.clock.Now())
		np := &model.Post{ChannelId: chID, Message: text, PendingPostId: b.pendingID(a.ID, msg)}
		np.SetProps(props)
		created, retry, err := call(ctx, "post the approval card", func(ctx context.Context) (*model.Post, *model.Response, error) {
			return api.CreatePost(ctx, np)
		})
		if err != nil {
			return retry, err
		}
		post = created
	}
	_, err := b.store.UpdateApproval(ctx, a.ID, "mattermost", func(cur *ica.Approval) (string, any, []*ica.OutboxMessage, error) {
		cur.Card = ica.CardRef{ChannelID: chID, PostID: post.Id}
		var msgs []*ica.OutboxMessage
		if cur.Version != a.Version {
			// The approval changed while the card was being posted.
			msgs = append(msgs, message(KindCardUpdate, fmt.Sprintf("%s:card:v%d", cur.ID, cur.Version), "card:"+cur.ID, cardPayload{ApprovalID: cur.ID}))
		}
		return ica.KindApprovalCard, map[string]string{"post_id": post.Id, "channel_id": chID}, msgs, nil
	})
	if err != nil {
		return true, fmt.Errorf("record card post %s: %w", post.Id, err)
	}
	return false, nil
}

// pendingID is the client-side id Mattermost uses to drop a repeated
// create (for 30 s): this ledger's id, the subject (approval or incident)
// and the outbox message. It is the same for every retry of one message and
// differs between ledgers, so two ICAs sharing a bot never share a card.
func (b *Bot) pendingID(subject string, msg *ica.OutboxMessage) string {
	return fmt.Sprintf("ica:%s:%s:%d", b.ledger(), subject, msg.ID)
}

// isOurCard reports whether a post is this ledger's card of the subject:
// posted by the bot, with the subject and this ledger's id in its props.
func (b *Bot) isOurCard(p *model.Post, prop, subject string) bool {
	me := b.botUser()
	return me != nil && p.UserId == me.Id && fmt.Sprint(p.GetProp(prop)) == subject &&
		fmt.Sprint(p.GetProp(propLedgerID)) == b.ledger()
}

// updateCard re-renders the card from the approval as it is now, sending
// the whole props so buttons appear and disappear as the state says.
func (b *Bot) updateCard(ctx context.Context, a *ica.Approval) (bool, error) {
	if a.Card.PostID == "" {
		return true, errors.New("the card is not posted yet")
	}
	text, props := b.renderCard(a, b.clock.Now())
	patch := &model.PostPatch{Message: &text, Props: &props}
	_, retry, err := call(ctx, "update the approval card", func(ctx context.Context) (*model.Post, *model.Response, error) {
		return b.client.API().PatchPost(ctx, a.Card.PostID, patch)
	})
	return retry, err
}

// fanOut expands a step notification into one message per approver, so a
// retry after a partial failure does not message anyone twice.
func (b *Bot) fanOut(ctx context.Context, a *ica.Approval, p cardPayload) (bool, error) {
	if a.Step() != p.Step {
		return false, nil // the step is over
	}
	users, retry, err := b.stepUsers(ctx, a, p.Step)
	if err != nil {
		return retry, err
	}
	var msgs []*ica.OutboxMessage
	kind := "notify"
	if p.Reminder {
		kind = "reminder"
	}
	for _, u := range users {
		isReq, err := b.isRequester(ctx, a, u)
		if err != nil {
			return true, err
		}
		if isReq || (p.Step == ica.StepBusiness && a.Technical != nil && a.Technical.UserID == u.Id) || u.IsBot {
			continue
		}
		q := p
		q.UserID, q.Username = u.Id, u.Username
		msgs = append(msgs, message(KindDM, fmt.Sprintf("%s:%s:%s:%s", a.ID, kind, p.Step, u.Id), "dm:"+u.Id, q))
	}
	if len(msgs) == 0 {
		b.log.Warn("no approver to notify", "approval_id", a.ID, "step", p.Step)
		return false, nil
	}
	if err := b.store.Enqueue(ctx, msgs...); err != nil {
		return true, err
	}
	return false, nil
}

// stepUsers lists the people who may decide a step.
func (b *Bot) stepUsers(ctx context.Context, a *ica.Approval, step string) ([]*model.User, bool, error) {
	pol := b.stepPolicy(a, step)
	api := b.client.API()
	var out []*model.User
	seen := map[string]bool{}
	// Named approvers by the user id their name resolved to (a name that
	// does not resolve approves nothing, so it is not asked either).
	for _, n := range pol.Usernames {
		id := b.userID(n)
		if id == "" || seen[id] {
			continue
		}
		u, err := b.user(ctx, id)
		if err != nil {
			return nil, true, err
		}
		seen[u.Id] = true
		out = append(out, u)
	}
	if pol.Channel != "" {
		chID := b.channelID(pol.Channel)
		for page := 0; chID != "" && page < 20; page++ {
			members, retry, err := call(ctx, "list ~"+pol.Channel, func(ctx context.Context) (model.ChannelMembers, *model.Response, error) {
				return api.GetChannelMembers(ctx, chID, page, 200, "")
			})
			if err != nil {
				return nil, retry, err
			}
			for _, m := range members {
				if seen[m.UserId] {
					continue
				}
				u, retry, err := call(ctx, "look up a channel member", func(ctx context.Context) (*model.User, *model.Response, error) {
					return api.GetUser(ctx, m.UserId, "")
				})
				if err != nil {
					return nil, retry, err
				}
				seen[u.Id] = true
				out = append(out, u)
			}
			if len(members) < 200 {
				break
			}
		}
	}
	return out, false, nil
}

// dmForbiddenRetry is how long after a DM was queued a 403 to its post is
// still taken for Mattermost's stale cache (see sendDM) and retried: longer
// than the 15 minutes that cache lives in Mattermost 6.x.
const dmForbiddenRetry = 20 * time.Minute

func (b *Bot) sendDM(ctx context.Context, msg *ica.OutboxMessage, a *ica.Approval, p cardPayload) (bool, error) {
	if a.Step() != p.Step {
		return false, nil // decided meanwhile: no point asking
	}
	if a.Card.PostID == "" {
		return true, errors.New("the card is not posted yet")
	}
	api := b.client.API()
	ch, retry, err := call(ctx, "open a DM with @"+p.Username, func(ctx context.Context) (*model.Channel, *model.Response, error) {
		return api.CreateDirectChannel(ctx, b.botUser().Id, p.UserID)
	})
	if err != nil {
		return retry, err
	}
	verb := "Your %s approval is requested"
	if p.Reminder {
		verb = ":hourglass: Reminder: your %s approval is still needed"
	}
	text := fmt.Sprintf(verb+" for **%s** run %s → **%s** (approval %s, %s). It expires in %s.\n%s",
		p.Step, show(a.PipelineName), show(a.RunID), a.Target, a.ID, money(a.EstimatedCost),
		FormatDuration(a.ExpiresAt.Sub(b.clock.Now())), b.permalink(a.Card.PostID))
	_, retry, err = call(ctx, "DM @"+p.Username, func(ctx context.Context) (*model.Post, *model.Response, error) {
		return api.CreatePost(ctx, &model.Post{ChannelId: ch.Id, Message: text})
	})
	if statusOf(err) == http.StatusForbidden && b.clock.Now().Sub(msg.CreatedAt) < dmForbiddenRetry {
		// The bot is a member of the channel it just opened, yet Mattermost
		// 6.x refuses its post when another request of the bot read the
		// bot's channel memberships while the channel was being created:
		// that read is cached, without the new channel, for up to 15
		// minutes (two ICAs sharing the bot, or a click handled meanwhile,
		// are enough). The refusal passes; the DM must not be lost to it.
		retry = true
	}
	return retry, err
}

func (b *Bot) announce(ctx context.Context, a *ica.Approval, p cardPayload, channel string) (bool, error) {
	chID, retry, err := b.lookupChannel(ctx, channel)
	if err != nil {
		return retry, err
	}
	text := p.Text
	if a.Card.PostID != "" {
		text += "\n" + b.permalink(a.Card.PostID)
	}
	post := &model.Post{ChannelId: chID, Message: text, RootId: ""}
	_, retry, err = call(ctx, "announce", func(ctx context.Context) (*model.Post, *model.Response, error) {
		return b.client.API().CreatePost(ctx, post)
	})
	return retry, err
}
