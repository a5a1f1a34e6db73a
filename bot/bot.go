// Package bot is ICA's Mattermost integration: the approval card, the button
// and dialog callbacks, the notifications, and the delivery of all of them
// through the outbox.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// StepPolicy says who may decide one step: Mattermost usernames and/or the
// members of a channel.
type StepPolicy struct {
	Usernames []string
	Channel   string
}

// TargetPolicy is the approval policy of one deployment target.
type TargetPolicy struct {
	Channel          string // where cards are posted
	Technical        StepPolicy
	Business         StepPolicy
	CommentOnApprove bool // approve opens a dialog with an optional comment
}

// Config configures the bot.
type Config struct {
	PublicURL        string // ICA's URL as Mattermost reaches it (button callbacks)
	Team             string // team name
	DefaultChannel   string // approval channel when a target names none
	FinanceChannel   string // finance alerts for approvals above the finance threshold
	Targets          map[string]TargetPolicy
	FinanceApprovers []string
	Secret           []byte        // HMAC key for button context and dialog state
	DialogTTL        time.Duration // how long an opened dialog may be submitted (default 15m)
}

// Store is what the bot needs from the ledger.
type Store interface {
	Approval(ctx context.Context, id string) (*ica.Approval, error)
	Transition(ctx context.Context, id string, t ica.Transition, actor string, check func(a *ica.Approval) error) (*ica.Approval, error)
	UpdateApproval(ctx context.Context, id, actor string, fn func(a *ica.Approval) (string, any, []*ica.OutboxMessage, error)) (*ica.Approval, error)
	Enqueue(ctx context.Context, msgs ...*ica.OutboxMessage) error
}

// Bot connects ICA to one Mattermost team.
type Bot struct {
	cfg    Config
	secret []byte
	client *Client
	store  Store
	clock  ica.Clock
	log    *slog.Logger
	budget BudgetSource

	budgetMu    sync.Mutex
	budgetCache *ica.Budget
	budgetAt    time.Time

	mu       sync.RWMutex
	me       *model.User
	teamID   string
	channels map[string]string // name → id
	users    map[string]string // lower-case username → id
	readyErr error

	members *memberCache
	dialogs *dialogStore

	incidents *incidentCards // incident cards and freeze warnings (incident.go); nil: disabled

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a bot; Start connects it.
func New(cfg Config, client *Client, store Store, clock ica.Clock, log *slog.Logger) *Bot {
	if cfg.DialogTTL == 0 {
		cfg.DialogTTL = 15 * time.Minute
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Bot{cfg: cfg, secret: cfg.Secret, client: client, store: store, clock: clock, log: log,
		channels: map[string]string{}, users: map[string]string{}, readyErr: errors.New("connecting to Mattermost"),
		members: newMemberCache(clock), dialogs: newDialogStore(clock)}
}

// SetBudget installs the source of the cards' budget line.
func (b *Bot) SetBudget(bud BudgetSource) { b.budget = bud }

// Start resolves the bot account, the team, the channels and the approvers,
// retrying with backoff while Mattermost is unreachable. It never fails: the
// reason is reported by Ready and delivery waits in the outbox.
func (b *Bot) Start(ctx context.Context) {
	ctx, b.cancel = context.WithCancel(ctx)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		delay := time.Second
		for {
			err := b.resolve(ctx)
			b.mu.Lock()
			b.readyErr = err
			b.mu.Unlock()
			if err == nil {
				b.log.Info("connected to Mattermost", "bot", b.me.Username, "team", b.cfg.Team)
				return
			}
			b.log.Warn("Mattermost not ready; will retry", "err", err, "retry_in", delay.String())
			select {
			case <-ctx.Done():
				return
			case <-b.clock.After(delay):
			}
			delay = min(delay*2, 5*time.Minute)
		}
	}()
}

// Stop ends the background work.
func (b *Bot) Stop() {
	if b.cancel != nil {
		b.cancel()
	}
	b.wg.Wait()
}

// Ready reports whether the bot is connected, or why not.
func (b *Bot) Ready(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.readyErr
}

func (b *Bot) resolve(ctx context.Context) error {
	api := b.client.API()
	me, _, err := call(ctx, "check the bot token (GET /users/me)", func(ctx context.Context) (*model.User, *model.Response, error) { return api.GetMe(ctx, "") })
	if err != nil {
		return err
	}
	team, _, err := call(ctx, "find team "+b.cfg.Team, func(ctx context.Context) (*model.Team, *model.Response, error) {
		return api.GetTeamByName(ctx, b.cfg.Team, "")
	})
	if err != nil {
		return err
	}
	channels := map[string]string{}
	// The approval channels are required; others (finance, incidents) are
	// looked up when first used, so a missing one does not stop approvals.
	want := []string{b.cfg.DefaultChannel}
	for _, p := range b.cfg.Targets {
		want = append(want, p.Channel, p.Technical.Channel, p.Business.Channel)
	}
	for _, name := range want {
		if name == "" || channels[name] != "" {
			continue
		}
		ch, _, err := call(ctx, "find channel "+name, func(ctx context.Context) (*model.Channel, *model.Response, error) {
			return api.GetChannelByName(ctx, name, team.Id, "")
		})
		if err != nil {
			return fmt.Errorf("%w (is the bot a member of team %s, and does channel %q exist?)", err, b.cfg.Team, name)
		}
		channels[name] = ch.Id
	}
	var names []string
	seen := map[string]bool{}
	for _, p := range b.cfg.Targets {
		for _, u := range append(append(append([]string{}, p.Technical.Usernames...), p.Business.Usernames...), b.cfg.FinanceApprovers...) {
			if l := strings.ToLower(u); !seen[l] {
				seen[l] = true
				names = append(names, u)
			}
		}
	}
	users := map[string]string{}
	if len(names) > 0 {
		found, _, err := call(ctx, "look up approvers", func(ctx context.Context) ([]*model.User, *model.Response, error) {
			return api.GetUsersByUsernames(ctx, names)
		})
		if err != nil {
			return err
		}
		for _, u := range found {
			users[strings.ToLower(u.Username)] = u.Id
		}
		for _, n := range names {
			if users[strings.ToLower(n)] == "" {
				b.log.Warn("configured approver is not a Mattermost user", "username", n)
			}
		}
	}
	b.mu.Lock()
	b.me, b.teamID, b.channels, b.users = me, team.Id, channels, users
	b.mu.Unlock()
	return nil
}

func (b *Bot) botUser() *model.User {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.me
}

func (b *Bot) channelID(name string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.channels[name]
}

func (b *Bot) userID(username string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.users[strings.ToLower(username)]
}

func (b *Bot) target(name string) TargetPolicy {
	p := b.cfg.Targets[name]
	if p.Channel == "" {
		p.Channel = b.cfg.DefaultChannel
	}
	return p
}

func (b *Bot) stepPolicy(a *ica.Approval, step string) StepPolicy {
	p := b.target(a.Target)
	if step == ica.StepBusiness {
		if a.FinanceRequired && a.BusinessRequired > 1 {
			// Several business approvers: one of them must be finance (the
			// state machine checks it), the others may be business approvers.
			return StepPolicy{Usernames: append(append([]string{}, p.Business.Usernames...), b.cfg.FinanceApprovers...), Channel: p.Business.Channel}
		}
		if a.FinanceRequired {
			return StepPolicy{Usernames: b.cfg.FinanceApprovers}
		}
		return p.Business
	}
	return p.Technical
}

// permalink returns a link to a post.
func (b *Bot) permalink(postID string) string {
	return strings.TrimRight(b.client.URL(), "/") + "/" + b.cfg.Team + "/pl/" + postID
}

// memberCache remembers channel memberships for a minute, so a burst of
// clicks does not become a burst of API calls.
type memberCache struct {
	mu    sync.Mutex
	clock ica.Clock
	m     map[string]memberEntry
}

type memberEntry struct {
	member bool
	at     time.Time
}

func newMemberCache(c ica.Clock) *memberCache {
	return &memberCache{clock: c, m: map[string]memberEntry{}}
}

func (c *memberCache) get(channel, user string) (bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[channel+"/"+user]
	if !ok || c.clock.Now().Sub(e.at) > time.Minute {
		return false, false
	}
	return e.member, true
}

func (c *memberCache) put(channel, user string, member bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[channel+"/"+user] = memberEntry{member: member, at: c.clock.Now()}
}

// eligible checks that the user may decide the approval's given step
// (approve or reject): named approver or member of the step's channel.
func (b *Bot) eligible(ctx context.Context, a *ica.Approval, step, userID, username string) error {
	pol := b.stepPolicy(a, step)
	for _, u := range pol.Usernames {
		if strings.EqualFold(u, username) {
			if id := b.userID(u); id == "" || id == userID {
				return nil
			}
		}
	}
	if pol.Channel != "" {
		chID := b.channelID(pol.Channel)
		if chID != "" {
			member, ok := b.members.get(chID, userID)
			if !ok {
				_, resp, err := b.client.API().GetChannelMember(ctx, chID, userID, "")
				if err == nil {
					member = true
				} else if resp != nil && (resp.StatusCode == 404 || resp.StatusCode == 403) {
					member = false
				} else {
					return ica.Unavailable("could not check membership of ~"+pol.Channel+"; try again", err)
				}
				b.members.put(chID, userID, member)
			}
			if member {
				return nil
			}
		}
	}
	who := "the " + step + " approvers"
	if step == ica.StepBusiness && a.FinanceRequired {
		who = "the finance approvers (the estimated cost is above the finance threshold)"
	}
	if len(pol.Usernames) == 0 && pol.Channel == "" {
		return ica.Errorf(ica.EFORBIDDEN, "no %s approvers are configured for %s; ask an ICA administrator", step, a.Target)
	}
	return ica.Errorf(ica.EFORBIDDEN, "@%s is not one of %s for %s", username, who, a.Target)
}
