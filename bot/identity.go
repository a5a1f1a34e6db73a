package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// Who clicked (DESIGN.md "Identities"): the signed trigger_id names a user
// id; everything else about the person (username, e-mail, whether the
// account is active) comes from GET /api/v4/users/{id}, never from the
// request body. Grants use user ids: configured approver usernames are
// resolved to ids, again every ApproverRefresh and when a click misses; a
// name that does not resolve grants nothing.

// missRefreshEvery bounds how often a click that misses re-resolves the
// approver names.
const missRefreshEvery = 30 * time.Second

// userCache keeps users read from Mattermost for a short while, so a burst
// of clicks is not a burst of API calls.
type userCache struct {
	mu    sync.Mutex
	clock ica.Clock
	ttl   time.Duration
	m     map[string]cachedUser
}

type cachedUser struct {
	u  *model.User
	at time.Time
}

func newUserCache(c ica.Clock, ttl time.Duration) *userCache {
	return &userCache{clock: c, ttl: ttl, m: map[string]cachedUser{}}
}

func (c *userCache) get(id string) *model.User {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[id]
	now := c.clock.Now()
	if !ok || now.Sub(e.at) > c.ttl || now.Before(e.at) {
		return nil
	}
	return e.u
}

func (c *userCache) put(u *model.User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) > 10000 {
		clear(c.m) // a bound, not an eviction policy: entries live 30 s anyway
	}
	c.m[u.Id] = cachedUser{u: u, at: c.clock.Now()}
}

// user returns the Mattermost user with that id, as the server describes it.
func (b *Bot) user(ctx context.Context, id string) (*model.User, error) {
	if u := b.userCache.get(id); u != nil {
		return u, nil
	}
	u, _, err := call(ctx, "look up the user", func(ctx context.Context) (*model.User, *model.Response, error) {
		return b.client.API().GetUser(ctx, id, "")
	})
	if err != nil {
		return nil, ica.Unavailable("ICA could not reach Mattermost to check who you are; try again", err)
	}
	if u.Id != id {
		return nil, ica.Errorf(ica.EFORBIDDEN, "Mattermost described another user")
	}
	b.userCache.put(u)
	return u, nil
}

// fetchSigningKey reads the server's AsymmetricSigningPublicKey.
func (b *Bot) fetchSigningKey(ctx context.Context) (string, error) {
	cfg, _, err := call(ctx, "read the client configuration", func(ctx context.Context) (map[string]string, *model.Response, error) {
		return b.client.ClientConfig(ctx)
	})
	if err != nil {
		return "", err
	}
	k := cfg["AsymmetricSigningPublicKey"]
	if k == "" {
		return "", errors.New("the server publishes no AsymmetricSigningPublicKey")
	}
	return k, nil
}

// Caller is a person proven by a trigger_id, as Mattermost describes them.
type Caller = model.User

// Verify checks a click's or a command's trigger_id for userID (signature,
// user, freshness, used once) and returns the user as GET /users/{id}
// describes them. The error's message can be shown to the user; the reason
// is logged here, with what (the surface) and attrs.
func (b *Bot) Verify(ctx context.Context, what, triggerID, userID string, attrs ...any) (*model.User, error) {
	if _, err := b.verifier.Verify(ctx, triggerID, userID); err != nil {
		var te *TriggerError
		if errors.As(err, &te) && te.Unavailable {
			b.log.Warn("refused Mattermost "+what+": trigger_id could not be checked", append([]any{"reason", te.Reason, "err", te.Err, "user_id", clip(userID, 40)}, attrs...)...)
			return nil, ica.Unavailable("ICA could not check this request with Mattermost right now; nothing was changed, please try again", err)
		}
		reason := err.Error()
		if te != nil {
			reason = te.Reason
		}
		b.log.Warn("refused Mattermost "+what+": trigger_id does not prove the user", append([]any{"reason", reason, "user_id", clip(userID, 40)}, attrs...)...)
		return nil, ica.Errorf(ica.EFORBIDDEN, "ICA could not confirm that this came from you through Mattermost, so nothing was changed")
	}
	if err := b.allowUser(what, userID); err != nil {
		return nil, err
	}
	u, err := b.user(ctx, userID)
	if err != nil {
		b.log.Warn("refused Mattermost "+what+": user lookup failed", append([]any{"user_id", userID, "err", err}, attrs...)...)
		return nil, err
	}
	if u.DeleteAt != 0 {
		b.log.Warn("refused Mattermost "+what+": the account is deactivated", append([]any{"user_id", userID}, attrs...)...)
		return nil, ica.Errorf(ica.EFORBIDDEN, "your Mattermost account is deactivated")
	}
	return u, nil
}

// configuredNames lists every username the configuration grants something
// to, once each.
func (b *Bot) configuredNames() []string {
	var names []string
	seen := map[string]bool{}
	add := func(list []string) {
		for _, u := range list {
			if ica.IsEntraApprover(u) {
				continue // decides through the API, not on a card
			}
			if l := ica.NormalizeUsername(u); l != "" && !seen[l] {
				seen[l] = true
				names = append(names, l)
			}
		}
	}
	for _, t := range []string{ica.TargetStaging, ica.TargetProduction} {
		p := b.cfg.Targets[t]
		add(p.Technical.Usernames)
		add(p.Business.Usernames)
	}
	add(b.cfg.FinanceApprovers)
	if b.incidents != nil {
		add(b.incidents.cfg.OnCall.Usernames)
		add(b.incidents.cfg.Commanders)
	}
	return names
}

// resolveApprovers maps every configured username to the id of the active
// Mattermost user of that name. Names that do not resolve are logged (when
// that changes) and reported by Approvers; they grant nothing.
func (b *Bot) resolveApprovers(ctx context.Context) error {
	b.resolveMu.Lock()
	defer b.resolveMu.Unlock()
	names := b.configuredNames()
	users := map[string]string{}
	if len(names) > 0 {
		found, _, err := call(ctx, "look up approvers", func(ctx context.Context) ([]*model.User, *model.Response, error) {
			return b.client.API().GetUsersByUsernames(ctx, names)
		})
		if err != nil {
			return err
		}
		for _, u := range found {
			if u.DeleteAt == 0 {
				users[ica.NormalizeUsername(u.Username)] = u.Id
				b.userCache.put(u)
			}
		}
	}
	var missing []string
	for _, n := range names {
		if users[n] == "" {
			missing = append(missing, n)
		}
	}
	b.mu.Lock()
	before := b.unresolved
	changed := map[string]string{}
	for n, id := range users {
		if old := b.users[n]; old != "" && old != id {
			changed[n] = old
		}
	}
	b.users, b.unresolved, b.resolvedAt = users, missing, b.clock.Now()
	b.mu.Unlock()
	for _, n := range missing {
		if !slices.Contains(before, n) {
			b.log.Warn("configured approver is not an active Mattermost user: they can approve nothing until the name resolves", "username", n)
		}
	}
	for n, old := range changed {
		b.log.Warn("configured approver name now belongs to another Mattermost user", "username", n, "old_user_id", old, "user_id", users[n])
	}
	return nil
}

// refreshApprovers re-resolves the approver names every ApproverRefresh
// until ctx ends.
func (b *Bot) refreshApprovers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.clock.After(b.cfg.ApproverRefresh):
		}
		if err := b.resolveApprovers(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("could not re-resolve approvers; keeping the last resolution", "err", err)
		}
	}
}

// namedUser reports whether u is one of the named users, by the id each
// name resolved to. On a miss that a fresh resolution could change (a name
// that did not resolve, or u carries one of the names under another id) it
// re-resolves, at most every missRefreshEvery, and looks again.
func (b *Bot) namedUser(ctx context.Context, names []string, u *model.User) bool {
	if len(names) == 0 {
		return false
	}
	match := func() (ok, retry bool) {
		for _, n := range names {
			id := b.userID(n)
			if id != "" && id == u.Id {
				return true, false
			}
			if id == "" || ica.NormalizeUsername(n) == ica.NormalizeUsername(u.Username) {
				retry = true
			}
		}
		return false, retry
	}
	ok, retry := match()
	if ok || !retry {
		return ok
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if resolved, err := b.resolveAfterMiss(rctx); err != nil {
		b.log.Warn("could not re-resolve approvers after a miss", "err", err)
		return false
	} else if !resolved {
		return false
	}
	ok, _ = match()
	return ok
}

// resolveAfterMiss re-resolves the approver names unless that was done in
// the last missRefreshEvery (so a stream of refused clicks cannot turn into
// a stream of lookups); it reports whether it resolved.
func (b *Bot) resolveAfterMiss(ctx context.Context) (bool, error) {
	if !b.missMu.TryLock() {
		// Another click is resolving right now; its answer comes soon enough.
		return false, nil
	}
	defer b.missMu.Unlock()
	b.mu.RLock()
	last := b.resolvedAt
	b.mu.RUnlock()
	if now := b.clock.Now(); now.Sub(last) < missRefreshEvery && !now.Before(last) {
		return false, nil
	}
	return true, b.resolveApprovers(ctx)
}

// Approvers reports configured approver names that do not resolve to a
// Mattermost user (for /readyz, which stays ready: such a name simply
// approves nothing).
func (b *Bot) Approvers(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if len(b.unresolved) == 0 {
		return nil
	}
	return fmt.Errorf("not Mattermost users, so they approve nothing: %s", strings.Join(b.unresolved, ", "))
}

// checkEmailVisibility finds out whether the bot sees users' e-mail
// addresses (the requester check compares them): the server shows them to
// everyone (PrivacySettings.ShowEmailAddress), or the bot may see them
// anyway (an approver's address came back).
func (b *Bot) checkEmailVisibility(ctx context.Context) {
	warn := ""
	cfg, _, err := call(ctx, "read the client configuration", func(ctx context.Context) (map[string]string, *model.Response, error) {
		return b.client.ClientConfig(ctx)
	})
	if err != nil || cfg["ShowEmailAddress"] != "true" {
		seen := false
		b.mu.RLock()
		ids := make([]string, 0, len(b.users))
		for _, id := range b.users {
			ids = append(ids, id)
		}
		b.mu.RUnlock()
		for _, id := range ids {
			if u := b.userCache.get(id); u != nil && u.Email != "" {
				seen = true
				break
			}
		}
		if !seen {
			warn = "the bot cannot see users' e-mail addresses (PrivacySettings.ShowEmailAddress is off and the bot has no permission to read them): the requester check compares usernames only"
			b.log.Warn("Mattermost hides e-mail addresses from the bot", "effect", "the requester check compares usernames only",
				"fix", "turn on System Console > Site Configuration > Users and Teams > Show Email Address, or give the bot account a role that may read e-mail addresses")
		}
	}
	b.mu.Lock()
	b.emailWarn = warn
	b.mu.Unlock()
}

// EmailVisibility reports (for /readyz) whether the bot sees e-mail addresses.
func (b *Bot) EmailVisibility(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.emailWarn != "" {
		return errors.New(b.emailWarn)
	}
	return nil
}

// isRequester reports whether u requested the approval's run: its
// triggered_by, or the Azure DevOps identity recorded with it, compared
// with u's username and e-mail after normalisation.
func (b *Bot) isRequester(ctx context.Context, a *ica.Approval, u *model.User) (bool, error) {
	names := []string{a.RequestedBy}
	rr, err := b.store.RunRequester(ctx, a.RunID)
	if err != nil {
		return false, ica.Unavailable("could not read the run's requester; try again", err)
	}
	if rr.Email != "" {
		names = append(names, rr.Email)
	}
	return ica.IsRequester(u.Username, u.Email, names...), nil
}

// UserLimiter limits the requests of one Mattermost user (a click, a
// command, a dialog submission), by the user id Mattermost proved.
type UserLimiter interface {
	AllowUser(userID string) (bool, time.Duration)
}

// LimitUsers installs the per-user limit of /mattermost/* (nil: none).
func (b *Bot) LimitUsers(l UserLimiter) { b.limiter = l }

// allowUser applies the per-user limit; call it only with a verified user
// id (the trigger_id, or ICA's own dialog state), never the body's claim,
// which would let anyone exhaust a real approver's allowance.
func (b *Bot) allowUser(what, userID string) error {
	if b.limiter == nil {
		return nil
	}
	if ok, wait := b.limiter.AllowUser(userID); !ok {
		b.log.Warn("refused Mattermost "+what+": over the per-user rate limit", "user_id", clip(userID, 40), "retry_after", wait.Round(time.Millisecond))
		return ica.Errorf(ica.ERATELIMIT, "you are sending requests faster than ICA accepts; nothing was changed, please try again in %s", max(wait, time.Second).Round(time.Second))
	}
	return nil
}
