package store

// Accepted key fingerprints. Replicas sharing a ledger must sign with the
// same checkpoint key and sign button contexts with the same action secret,
// or one replica's cards and checkpoints would not verify on another. The
// fingerprints (never the keys) are kept in the ledger's metadata: the first
// process to start records its own; a process with another key is refused
// at start until an operator accepts the key (ica key rotate).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// KindKeyAccepted records that the ledger accepts another key fingerprint.
const KindKeyAccepted = "key.accepted"

func keyFingerprintKey(kind string) []byte { return []byte("key_fingerprints:" + kind) }

// KeyFingerprints are the accepted fingerprints of one kind of key, oldest first.
func readFingerprints(tx Tx, kind string) ([]string, error) {
	var fps []string
	if v := tx.Bucket(bucketMeta).Get(keyFingerprintKey(kind)); v != nil {
		if err := json.Unmarshal(v, &fps); err != nil {
			return nil, fmt.Errorf("accepted %s fingerprints are unreadable: %w", kind, err)
		}
	}
	return fps, nil
}

// CheckKeys compares the fingerprints of this process's keys (kind →
// fingerprint, e.g. "signing" and "action_secret") with those the ledger
// accepts. A ledger that accepts none yet records them; a fingerprint the
// ledger does not accept is refused, naming what to do.
func (s *Store) CheckKeys(ctx context.Context, keys map[string]string, setting map[string]string) error {
	return s.update(func(tx Tx, st *txState) error {
		var problems []string
		kinds := make([]string, 0, len(keys))
		for k := range keys {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, kind := range kinds {
			fp := keys[kind]
			fps, err := readFingerprints(tx, kind)
			if err != nil {
				return err
			}
			if len(fps) == 0 {
				raw, _ := json.Marshal([]string{fp})
				if err := tx.Bucket(bucketMeta).Put(keyFingerprintKey(kind), raw); err != nil {
					return err
				}
				continue
			}
			if !slices.Contains(fps, fp) {
				problems = append(problems, fmt.Sprintf("%s (fingerprint %s) is not one this ledger accepts (%s): every replica must use the same; to move to a new one on purpose, run `ica key rotate --kind %s` with it set",
					setting[kind], fp, strings.Join(fps, ", "), kind))
			}
		}
		if len(problems) > 0 {
			return ica.Errorf(ica.ECONFLICT, "%s", strings.Join(problems, "; "))
		}
		return nil
	})
}

// AcceptKey adds a key fingerprint to those the ledger accepts and records
// that in the ledger.
func (s *Store) AcceptKey(ctx context.Context, kind, fingerprint, actor string) (added bool, err error) {
	err = s.update(func(tx Tx, st *txState) error {
		fps, err := readFingerprints(tx, kind)
		if err != nil {
			return err
		}
		if added = !slices.Contains(fps, fingerprint); !added {
			return nil
		}
		raw, _ := json.Marshal(append(fps, fingerprint))
		if err := tx.Bucket(bucketMeta).Put(keyFingerprintKey(kind), raw); err != nil {
			return err
		}
		_, err = s.appendLedger(tx, st.now, KindKeyAccepted, kind, actor, map[string]any{"kind": kind, "fingerprint": fingerprint, "previous": fps})
		return err
	})
	return added, err
}

// AcceptedKeys returns the accepted fingerprints of one kind of key.
func (s *Store) AcceptedKeys(kind string) ([]string, error) {
	var fps []string
	err := s.view(func(tx Tx) error {
		var err error
		fps, err = readFingerprints(tx, kind)
		return err
	})
	return fps, err
}
