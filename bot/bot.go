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

	// InstanceName says which ICA this is (ICA_INSTANCE_NAME: staging,
	// production); shown in the cards' footer when set.
	InstanceName string
	// SigningKey is the Mattermost server's public key for trigger_ids
	// (ICA_MATTERMOST_SIGNING_KEY, base64 DER); empty: fetched from the server.
	SigningKey string
	// ApproverRefresh is how often approver usernames are resolved to user
	// ids again (default 10m); a miss re-resolves sooner.
	ApproverRefresh time.Duration
	// UserCacheTTL is how long a user read from GET /users/{id} is reused
	// (default 30s).
	UserCacheTTL time.Duration
}

// Store is what the bot needs from the ledger.
type Store interface {
	Approval(ctx context.Context, id string) (*ica.Approval, error)
	Transition(ctx context.Context, id string, t ica.Transition, actor string, check func(a *ica.Approval) error) (*ica.Approval, error)
	UpdateApproval(ctx context.Context, id, actor string, fn func(a *ica.Approval) (string, any, []*ica.OutboxMessage, error)) (*ica.Approval, error)
	Enqueue(ctx context.Context, msgs ...*ica.OutboxMessage) error
	// RunRequester is the Azure DevOps identity a run was requested for.
	RunRequester(ctx context.Context, runID string) (ica.RunRequester, error)
	// LedgerID is the ledger's own id, part of every card's identity.
	LedgerID() string

	UsedTriggers
	DialogNonces
}

// DialogNonces keeps the dialogs ICA opened, in the store, so a dialog
// opened through one replica can be submitted through another, once, by the
// user it was opened for.
type DialogNonces interface {
	AddDialogNonce(ctx context.Context, nonce, userID string, until time.Time) error
	DialogNonceOpen(ctx context.Context, nonce, userID string) (bool, error)
	// TakeDialogNonce fails with ica.ECONFLICT when the dialog is not open
	// for that user.
	TakeDialogNonce(ctx context.Context, nonce, userID string) error
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

	mu         sync.RWMutex
	me         *model.User
	teamID     string
	ledgerID   string
	channels   map[string]string // name → id
	users      map[string]string // configured username (lower-case) → user id
	unresolved []string          // configured usernames that are no Mattermost user
	resolvedAt time.Time
	emailWarn  string // why the bot may not see e-mail addresses, or ""
	readyErr   error

	verifier  *TriggerVerifier
	keyErr    error // a bad ICA_MATTERMOST_SIGNING_KEY
	members   *memberCache
	userCache *userCache
	resolveMu sync.Mutex // one approver resolution at a time
	missMu    sync.Mutex // one resolution after a miss at a time

	incidents *incidentCards // incident cards and freeze warnings (incident.go); nil: disabled
	limiter   UserLimiter    // per verified user on /mattermost/*; nil: none

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a bot; Start connects it.
func New(cfg Config, client *Client, store Store, clock ica.Clock, log *slog.Logger) *Bot {
	if cfg.DialogTTL == 0 {
		cfg.DialogTTL = 15 * time.Minute
	}
	if cfg.ApproverRefresh == 0 {
		cfg.ApproverRefresh = 10 * time.Minute
	}
	if cfg.UserCacheTTL == 0 {
		cfg.UserCacheTTL = 30 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	b := &Bot{cfg: cfg, secret: cfg.Secret, client: client, store: store, clock: clock, log: log,
		channels: map[string]string{}, users: map[string]string{}, readyErr: errors.New("connecting to Mattermost"),
		members: newMemberCache(clock), userCache: newUserCache(clock, cfg.UserCacheTTL)}
	b.verifier, b.keyErr = NewTriggerVerifier(cfg.SigningKey, b.fetchSigningKey, store, clock)
	if b.keyErr != nil {
		b.verifier, _ = NewTriggerVerifier("", nil, store, clock) // verifies nothing
		b.readyErr = b.keyErr
	}
	return b
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
				b.refreshApprovers(ctx)
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
	if b.keyErr != nil {
		return b.keyErr
	}
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
	ledgerID := b.store.LedgerID()
	if err := b.verifier.Refresh(ctx); err != nil {
		return fmt.Errorf("%w (button clicks and commands cannot be verified without it)", err)
	}
	b.mu.Lock()
	b.me, b.teamID, b.channels, b.ledgerID = me, team.Id, channels, ledgerID
	b.mu.Unlock()
	if err := b.resolveApprovers(ctx); err != nil {
		return err
	}
	b.checkEmailVisibility(ctx)
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

// userID returns the user id a configured username resolved to, or "".
func (b *Bot) userID(username string) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.users[ica.NormalizeUsername(username)]
}

func (b *Bot) ledger() string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.ledgerID
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

// eligible checks that the user, as Mattermost describes them, may decide
// the approval's given step (approve or reject): a named approver (by the
// user id the name resolved to; a name that does not resolve grants
// nothing) or a member of the step's channel.
func (b *Bot) eligible(ctx context.Context, a *ica.Approval, step string, u *model.User) error {
	pol := b.stepPolicy(a, step)
	if b.namedUser(ctx, pol.Usernames, u) {
		return nil
	}
	if pol.Channel != "" {
		chID := b.channelID(pol.Channel)
		if chID != "" {
			member, err := b.isMember(ctx, chID, u.Id)
			if err != nil {
				return ica.Unavailable("could not check membership of ~"+pol.Channel+"; try again", err)
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
	return ica.Errorf(ica.EFORBIDDEN, "@%s is not one of %s for %s", u.Username, who, a.Target)
}

// isMember reports whether the user is in the channel, remembering the
// answer for a minute.
func (b *Bot) isMember(ctx context.Context, chID, userID string) (bool, error) {
	if member, ok := b.members.get(chID, userID); ok {
		return member, nil
	}
	_, resp, err := b.client.API().GetChannelMember(ctx, chID, userID, "")
	member := false
	switch {
	case err == nil:
		member = true
	case resp != nil && (resp.StatusCode == 404 || resp.StatusCode == 403):
	default:
		return false, err
	}
	b.members.put(chID, userID, member)
	return member, nil
}
