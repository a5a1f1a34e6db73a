package store

// Single-use operational state of the Mattermost callbacks (DESIGN.md
// "State"): the trigger_ids already used, and the dialogs ICA opened and
// that may still be submitted. Every replica must see them, so they live in
// the store; they are not derived from the ledger and are not part of it:
// each kind has its own bucket, and a shared index by expiry lets every
// write drop what has expired, so the buckets hold only the last minutes.

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/ica-governance/ica"
)

// Buckets of single-use state.
var (
	bucketUsedTriggers = []byte("used_triggers")    // trigger key → expiry (unix ns, big-endian)
	bucketDialogNonces = []byte("dialog_nonces")    // nonce → dialogNonce
	bucketNonceExpiry  = []byte("idx_nonce_expiry") // expiry ‖ kind ‖ key → nil
)

// Kinds in bucketNonceExpiry.
const (
	nonceKindTrigger = 't'
	nonceKindDialog  = 'd'
)

// prunePerWrite bounds the expired records one write removes.
const prunePerWrite = 256

type dialogNonce struct {
	UserID    string    `json:"user_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func expiryKey(until time.Time, kind byte, key string) []byte {
	k := make([]byte, 8, 9+len(key))
	binary.BigEndian.PutUint64(k, uint64(until.UnixNano()))
	k = append(k, kind)
	return append(k, key...)
}

// nonceBuckets returns the buckets, after dropping up to prunePerWrite
// records that expired before now.
func nonceBuckets(tx Tx, now time.Time) (triggers, dialogs, idx Bucket, err error) {
	triggers, dialogs, idx = tx.Bucket(bucketUsedTriggers), tx.Bucket(bucketDialogNonces), tx.Bucket(bucketNonceExpiry)
	var stale [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && len(stale) < prunePerWrite; k, _ = c.Next() {
		if len(k) < 9 || int64(binary.BigEndian.Uint64(k)) >= now.UnixNano() {
			break
		}
		stale = append(stale, append([]byte(nil), k...))
	}
	for _, k := range stale {
		b := triggers
		if k[8] == nonceKindDialog {
			b = dialogs
		}
		if err = b.Delete(k[9:]); err != nil {
			return
		}
		if err = idx.Delete(k); err != nil {
			return
		}
	}
	return
}

// UseTrigger records a Mattermost trigger as used until the given time (when
// it is stale anyway). It fails with ica.ECONFLICT when the trigger was
// already used, so each click or command acts once across all replicas.
func (s *Store) UseTrigger(ctx context.Context, key string, until time.Time) error {
	if key == "" {
		return ica.Errorf(ica.EINVALID, "empty trigger key")
	}
	return s.update(func(tx Tx, st *txState) error {
		triggers, _, idx, err := nonceBuckets(tx, st.now)
		if err != nil {
			return err
		}
		if v := triggers.Get([]byte(key)); v != nil && len(v) == 8 && int64(binary.BigEndian.Uint64(v)) >= st.now.UnixNano() {
			return ica.Errorf(ica.ECONFLICT, "this click or command was already received")
		}
		var exp [8]byte
		binary.BigEndian.PutUint64(exp[:], uint64(until.UnixNano()))
		if err := triggers.Put([]byte(key), exp[:]); err != nil {
			return err
		}
		return idx.Put(expiryKey(until, nonceKindTrigger, key), nil)
	})
}

// AddDialogNonce remembers a dialog ICA opened for a user, submittable until
// the given time through any replica.
func (s *Store) AddDialogNonce(ctx context.Context, nonce, userID string, until time.Time) error {
	if nonce == "" || userID == "" {
		return ica.Errorf(ica.EINVALID, "a dialog nonce needs a nonce and a user")
	}
	return s.update(func(tx Tx, st *txState) error {
		_, dialogs, idx, err := nonceBuckets(tx, st.now)
		if err != nil {
			return err
		}
		if dialogs.Get([]byte(nonce)) != nil {
			return ica.Errorf(ica.ECONFLICT, "dialog nonce already exists")
		}
		if err := putJSON(dialogs, []byte(nonce), dialogNonce{UserID: userID, ExpiresAt: until.UTC()}); err != nil {
			return err
		}
		return idx.Put(expiryKey(until, nonceKindDialog, nonce), nil)
	})
}

// DialogNonceOpen reports whether the dialog is open for that user: added,
// not taken, not expired. It changes nothing.
func (s *Store) DialogNonceOpen(ctx context.Context, nonce, userID string) (bool, error) {
	open := false
	err := s.view(func(tx Tx) error {
		d, err := getJSON[dialogNonce](tx.Bucket(bucketDialogNonces), []byte(nonce))
		if err != nil {
			return err
		}
		open = d != nil && d.UserID == userID && s.clock.Now().Before(d.ExpiresAt)
		return nil
	})
	return open, err
}

// TakeDialogNonce consumes the dialog for that user; it fails with
// ica.ECONFLICT when the dialog is not open for them (never opened, opened
// for someone else, expired, or already submitted).
func (s *Store) TakeDialogNonce(ctx context.Context, nonce, userID string) error {
	return s.update(func(tx Tx, st *txState) error {
		_, dialogs, idx, err := nonceBuckets(tx, st.now)
		if err != nil {
			return err
		}
		d, err := getJSON[dialogNonce](dialogs, []byte(nonce))
		if err != nil {
			return err
		}
		if d == nil || d.UserID != userID || !st.now.Before(d.ExpiresAt) {
			return ica.Errorf(ica.ECONFLICT, "this dialog is no longer open; click the button on the card again")
		}
		if err := dialogs.Delete([]byte(nonce)); err != nil {
			return err
		}
		return idx.Delete(expiryKey(d.ExpiresAt, nonceKindDialog, nonce))
	})
}
