package store

// Single-use dashboard links (package dashboard). A link is stored under the
// SHA-256 of its token, never the token itself, so a copy of the ledger file
// (a backup) holds no usable link. Issuing a link and using it are ledger
// entries (session.created, session.link_used), each in the transaction that
// changes the link.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ica-governance/ica"
)

// bucketDashboardLinks holds token hash → dashboardLink.
var bucketDashboardLinks = []byte("dashboard_links")

// Ledger kinds of dashboard sessions.
const (
	KindSessionCreated  = ica.KindSession + "created"
	KindSessionLinkUsed = ica.KindSession + "link_used"
)

// linkRetention is how long used and expired links are kept before the next
// issued link prunes them (so a repeat of a used link is told it was used).
const linkRetention = 24 * time.Hour

type dashboardLink struct {
	UserID    string     `json:"user_id"`
	Username  string     `json:"username"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at,omitempty"`
}

// CreateDashboardLink stores a link (by its token's hash, hex) for a
// Mattermost user, valid for ttl, and records session.created. It also
// deletes links that ended more than a day ago (the bucket holds only a
// day's worth of links, so the walk is short).
func (s *Store) CreateDashboardLink(ctx context.Context, tokenHash, userID, username string, ttl time.Duration) (expiresAt time.Time, err error) {
	err = s.update(func(tx Tx, st *txState) error {
		b := tx.Bucket(bucketDashboardLinks)
		var stale [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			var l dashboardLink
			if json.Unmarshal(v, &l) != nil || st.now.Sub(l.ExpiresAt) > linkRetention {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if b.Get([]byte(tokenHash)) != nil {
			return ica.Errorf(ica.ECONFLICT, "dashboard link already exists")
		}
		l := dashboardLink{UserID: userID, Username: username, CreatedAt: st.now, ExpiresAt: st.now.Add(ttl)}
		if _, err := s.appendLedger(tx, st.now, KindSessionCreated, username, "mattermost:"+username, map[string]any{
			"user_id": userID, "username": username, "link": tokenHash[:min(16, len(tokenHash))], "expires_at": l.ExpiresAt,
		}); err != nil {
			return err
		}
		expiresAt = l.ExpiresAt
		return putJSON(b, []byte(tokenHash), l)
	})
	return expiresAt, err
}

// UseDashboardLink consumes a link: in one transaction it checks that the
// link exists, is unused and has not expired, marks it used and records
// session.link_used with the session's expiry. It returns who the link was
// for. Refusals are ica.EUNAUTHORIZED errors that say why.
//
// Anyone can post a guessed token, so a link that a read shows unknown, used
// or expired is refused before the writer, on every engine; the write checks
// again.
func (s *Store) UseDashboardLink(ctx context.Context, tokenHash string, sessionExpires time.Time) (userID, username string, err error) {
	if _, err := s.precheckAlways(func(tx Tx) (bool, error) {
		_, err := usableLink(tx, tokenHash, s.clock.Now())
		return false, err
	}); err != nil {
		return "", "", err
	}
	err = s.update(func(tx Tx, st *txState) error {
		userID, username = "", ""
		b := tx.Bucket(bucketDashboardLinks)
		l, err := usableLink(tx, tokenHash, st.now)
		if err != nil {
			return err
		}
		now := st.now
		l.UsedAt = &now
		if _, err := s.appendLedger(tx, st.now, KindSessionLinkUsed, l.Username, "mattermost:"+l.Username, map[string]any{
			"user_id": l.UserID, "username": l.Username, "link": tokenHash[:min(16, len(tokenHash))], "session_expires_at": sessionExpires.UTC(),
		}); err != nil {
			return err
		}
		userID, username = l.UserID, l.Username
		return putJSON(b, []byte(tokenHash), l)
	})
	return userID, username, err
}

// usableLink returns the link of tokenHash if it can be used at now, or
// why not (ica.EUNAUTHORIZED).
func usableLink(tx Tx, tokenHash string, now time.Time) (*dashboardLink, error) {
	l, err := getJSON[dashboardLink](tx.Bucket(bucketDashboardLinks), []byte(tokenHash))
	if err != nil {
		return nil, err
	}
	switch {
	case l == nil:
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "this dashboard link is not valid")
	case l.UsedAt != nil:
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "this dashboard link was already used at %s; links work once", l.UsedAt.Format(time.RFC3339))
	case !now.Before(l.ExpiresAt):
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "this dashboard link expired at %s; links work for %s after /ica dashboard", l.ExpiresAt.Format(time.RFC3339), l.ExpiresAt.Sub(l.CreatedAt))
	}
	return l, nil
}
