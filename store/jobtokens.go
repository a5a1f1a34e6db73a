package store

// Azure DevOps job tokens (the AuthToken of a check in callback mode) are
// secrets that live at most 48 hours and are needed once: to post the
// check's TaskCompleted. The store never keeps one in clear and never
// records one in the ledger:
//   - while the approval is open, the token is kept sealed (Options.
//     TokenSealer, a key outside the ledger) in ado_job_tokens, under the
//     approval and the check's task, beside the check's record (which holds
//     the callback without its token);
//   - when the approval becomes final, the sealed token moves into the
//     outbox message that posts the TaskCompleted (OutboxMessage.Sealed),
//     in the same transaction;
//   - delivering the message deletes it, and the token with it; a message
//     that cannot be delivered is dead-lettered without its token.
// So a backup holds only sealed tokens of checks still waiting, which the
// backup's reader cannot open without the key.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/ica-governance/ica"
)

// bucketJobTokens holds approval id ‖ 0 ‖ task instance id → sealed token.
var bucketJobTokens = []byte("ado_job_tokens")

// TokenSealer encrypts a secret the store keeps for a while, with a key
// that is not stored with the ledger; context binds the ciphertext to what
// it belongs to (ica.CheckCallback.TokenContext).
type TokenSealer interface {
	Seal(secret, context []byte) ([]byte, error)
}

func checkKey(approvalID, taskInstanceID string) []byte {
	return join([]byte(approvalID), sep, []byte(taskInstanceID))
}

// sealJobToken returns the callback as the store keeps it (no token) and the
// token sealed.
func (s *Store) sealJobToken(cb *ica.CheckCallback) (*ica.CheckCallback, []byte, error) {
	if s.opt.TokenSealer == nil {
		return nil, nil, ica.NotConfigured("keeping Azure DevOps job tokens", "a job token key (the store's TokenSealer)")
	}
	sealed, err := s.opt.TokenSealer.Seal([]byte(cb.AuthToken), cb.TokenContext())
	if err != nil {
		return nil, nil, fmt.Errorf("seal the job token: %w", err)
	}
	kept := *cb
	kept.AuthToken = ""
	return &kept, sealed, nil
}

// takeJobToken removes and returns the sealed token of a check (nil: none).
func takeJobToken(tx Tx, key []byte) ([]byte, error) {
	b := tx.Bucket(bucketJobTokens)
	v := b.Get(key)
	if v == nil {
		return nil, nil
	}
	sealed := bytes.Clone(v)
	return sealed, b.Delete(key)
}

// SealLegacyJobTokens seals the job tokens an earlier ICA kept in clear (in
// check records and queued messages) and erases those of dead letters. It
// runs once at start; with nothing left in clear it only reads.
func (s *Store) SealLegacyJobTokens() (int, error) {
	if s.opt.TokenSealer == nil {
		return 0, nil
	}
	found := false
	if err := s.eng.View(func(tx Tx) error {
		found = hasLegacyJobTokens(tx)
		return nil
	}); err != nil || !found {
		return 0, err
	}
	n := 0
	err := s.update(func(tx Tx, st *txState) error {
		n = 0
		checks := tx.Bucket(bucketChecks)
		var keys, vals [][]byte
		if err := checks.ForEach(func(k, v []byte) error {
			keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
			return nil
		}); err != nil {
			return err
		}
		for i, k := range keys {
			var cb ica.CheckCallback
			if json.Unmarshal(vals[i], &cb) != nil || cb.AuthToken == "" {
				continue
			}
			kept, sealed, err := s.sealJobToken(&cb)
			if err != nil {
				return err
			}
			a, err := getApproval(tx, string(k[:max(bytes.IndexByte(k, 0), 0)]))
			if err != nil {
				return err
			}
			if a != nil && !a.Final() { // still needed: kept sealed
				if err := tx.Bucket(bucketJobTokens).Put(k, sealed); err != nil {
					return err
				}
			}
			if err := putJSON(checks, k, kept); err != nil {
				return err
			}
			n++
		}
		for _, b := range [][]byte{bucketOutbox, bucketOutboxDead} {
			ob := tx.Bucket(b)
			var keys, vals [][]byte
			if err := ob.ForEach(func(k, v []byte) error {
				if bytes.Contains(v, []byte(`"auth_token"`)) {
					keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
				}
				return nil
			}); err != nil {
				return err
			}
			for i, k := range keys {
				var m ica.OutboxMessage
				var c ica.CheckCompletion
				if json.Unmarshal(vals[i], &m) != nil || m.Destination != ica.CheckDestination || json.Unmarshal(m.Payload, &c) != nil || c.Callback.AuthToken == "" {
					continue
				}
				if bytes.Equal(b, bucketOutbox) {
					kept, sealed, err := s.sealJobToken(&c.Callback)
					if err != nil {
						return err
					}
					c.Callback, m.Sealed = *kept, sealed
				} else {
					c.Callback.AuthToken = "" // a dead letter is never sent: its token goes
				}
				raw, err := json.Marshal(c)
				if err != nil {
					return err
				}
				m.Payload = raw
				if err := putJSON(ob, k, &m); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// hasLegacyJobTokens reports whether a token is kept in clear anywhere.
func hasLegacyJobTokens(tx Tx) bool {
	found := false
	for _, b := range [][]byte{bucketChecks, bucketOutbox, bucketOutboxDead} {
		_ = tx.Bucket(b).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(`"auth_token"`)) {
				found = true
				return errStopWalk
			}
			return nil
		})
	}
	return found
}

var errStopWalk = fmt.Errorf("stop")

// KeptJobTokens returns how many sealed job tokens wait for their approval's
// decision.
func (s *Store) KeptJobTokens(ctx context.Context) (int, error) {
	n := 0
	err := s.view(func(tx Tx) error {
		n = countKeys(tx.Bucket(bucketJobTokens))
		return nil
	})
	return n, err
}
