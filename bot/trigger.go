package bot

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// The trigger_id is the one thing Mattermost signs in a click or a slash
// command (DESIGN.md "Button callbacks and dialogs"):
//
//	base64("<client trigger id>:<user id>:<unix ms>:" + base64(ASN.1 ECDSA-P256-SHA256 signature))
//
// signed over "<client trigger id>:<user id>:<unix ms>:" (trailing colon
// included) with the server's key, whose public half the server publishes
// as AsymmetricSigningPublicKey in /api/v4/config/client?format=old. It
// does not cover the body, so it proves only who clicked and when; ICA
// checks the rest (context HMAC, post id, the user's rights) itself.

// Trigger limits.
const (
	// TriggerMaxAge is how far a trigger's time may be from ICA's clock, in
	// either direction (clock skew): Mattermost gives up on an integration
	// after 30 s, so an older trigger was never delivered by it.
	TriggerMaxAge = 30 * time.Second
	// maxTriggerLen bounds what is decoded (a real one is about 190 bytes).
	maxTriggerLen = 1024
	// keyRefreshEvery bounds how often a verification failure re-fetches
	// the server's key.
	keyRefreshEvery = time.Minute
)

// Trigger is a decoded trigger_id. Parsing does not verify it: see
// TriggerVerifier.
type Trigger struct {
	ClientID string
	UserID   string
	At       time.Time
	signed   string // "<client id>:<user id>:<unix ms>:", the signed bytes
	sig      []byte // ASN.1 DER ECDSA signature
}

// Key identifies the trigger for the used-once check: the signed part, so a
// re-encoded signature (ECDSA signatures are malleable) is the same trigger.
func (t *Trigger) Key() string { return strings.TrimSuffix(t.signed, ":") }

var errTrigger = errors.New("malformed trigger_id")

// ParseTrigger decodes a trigger_id. It accepts exactly the real format:
// standard base64 around four colon-separated fields, Mattermost ids for the
// client trigger and the user, a decimal millisecond time, and a standard
// base64 signature.
func ParseTrigger(s string) (*Trigger, error) {
	if s == "" {
		return nil, errors.New("no trigger_id")
	}
	if len(s) > maxTriggerLen {
		return nil, errTrigger
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errTrigger
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 {
		return nil, errTrigger
	}
	client, user, ms, sig64 := parts[0], parts[1], parts[2], parts[3]
	if !isMattermostID(client) || !isMattermostID(user) || ms == "" || len(ms) > 16 || strings.TrimLeft(ms, "0123456789") != "" {
		return nil, errTrigger
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return nil, errTrigger
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil || len(sig) == 0 || len(sig) > 80 {
		return nil, errTrigger
	}
	return &Trigger{ClientID: client, UserID: user, At: time.UnixMilli(n).UTC(),
		signed: client + ":" + user + ":" + ms + ":", sig: sig}, nil
}

// isMattermostID reports whether s looks like a Mattermost id (26 lower-case
// base32 characters).
func isMattermostID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// VerifySignature reports whether key signed the trigger.
func (t *Trigger) VerifySignature(key *ecdsa.PublicKey) bool {
	if key == nil {
		return false
	}
	sum := sha256.Sum256([]byte(t.signed))
	return ecdsa.VerifyASN1(key, sum[:], t.sig)
}

// ParseSigningKey reads a Mattermost server's AsymmetricSigningPublicKey
// (base64 of the DER public key; P-256).
func ParseSigningKey(s string) (*ecdsa.PublicKey, error) {
	der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("the Mattermost signing key is not base64: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("the Mattermost signing key is not a DER public key: %w", err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("the Mattermost signing key is not an ECDSA P-256 key")
	}
	return k, nil
}

// UsedTriggers remembers which triggers were used, in the store, so that a
// trigger works once across every replica.
type UsedTriggers interface {
	// UseTrigger records key as used until the given time; it fails with an
	// ica.ECONFLICT error when key is already recorded.
	UseTrigger(ctx context.Context, key string, until time.Time) error
}

// TriggerVerifier checks trigger_ids: signed by the Mattermost server's key,
// naming the expected user, fresh, and not used before.
type TriggerVerifier struct {
	clock ica.Clock
	used  UsedTriggers
	// fetch returns the server's key (AsymmetricSigningPublicKey); nil when
	// the key is configured (ICA_MATTERMOST_SIGNING_KEY) and never fetched.
	fetch func(ctx context.Context) (string, error)

	mu        sync.Mutex
	key       *ecdsa.PublicKey
	fetchedAt time.Time
}

// NewTriggerVerifier returns a verifier. With a configured key (base64 DER)
// it uses that key only; with "" it fetches the key through fetch when first
// needed and again (at most once a minute) when a signature does not verify,
// so a server key rotation heals by itself.
func NewTriggerVerifier(configured string, fetch func(ctx context.Context) (string, error), used UsedTriggers, clock ica.Clock) (*TriggerVerifier, error) {
	v := &TriggerVerifier{clock: clock, used: used, fetch: fetch}
	if configured != "" {
		k, err := ParseSigningKey(configured)
		if err != nil {
			return nil, fmt.Errorf("ICA_MATTERMOST_SIGNING_KEY: %w", err)
		}
		v.key, v.fetch = k, nil
	}
	return v, nil
}

// Refresh fetches the server's key now (at start-up); it is a no-op with a
// configured key.
func (v *TriggerVerifier) Refresh(ctx context.Context) error {
	if v.fetch == nil {
		return nil
	}
	s, err := v.fetch(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.fetchedAt = v.clock.Now()
	if err != nil {
		return fmt.Errorf("fetch the Mattermost signing key: %w", err)
	}
	k, err := ParseSigningKey(s)
	if err != nil {
		return err
	}
	v.key = k
	return nil
}

// HasKey reports whether a key is known (for readiness).
func (v *TriggerVerifier) HasKey() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.key != nil
}

func (v *TriggerVerifier) currentKey() *ecdsa.PublicKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.key
}

// mayRefresh reports whether a failed verification may re-fetch the key now,
// and reserves the attempt.
func (v *TriggerVerifier) mayRefresh() bool {
	if v.fetch == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.clock.Now()
	if !v.fetchedAt.IsZero() && now.Sub(v.fetchedAt) < keyRefreshEvery && !now.Before(v.fetchedAt) {
		return false
	}
	v.fetchedAt = now
	return true
}

// TriggerError is why a trigger was refused; Reason is for the log (it
// never contains the trigger itself).
type TriggerError struct {
	Reason string
	// Unavailable means ICA could not check (no key, store down): the user
	// may try again.
	Unavailable bool
	Err         error
}

func (e *TriggerError) Error() string {
	if e.Err != nil {
		return "trigger_id refused: " + e.Reason + ": " + e.Err.Error()
	}
	return "trigger_id refused: " + e.Reason
}

func (e *TriggerError) Unwrap() error { return e.Err }

// Verify checks that trigger was signed by the Mattermost server for
// userID, that its time is within TriggerMaxAge of ICA's clock, and that it
// was not used before; it then records it as used. It checks in that order,
// so a forged request costs no write.
func (v *TriggerVerifier) Verify(ctx context.Context, trigger, userID string) (*Trigger, error) {
	t, err := ParseTrigger(trigger)
	if err != nil {
		return nil, &TriggerError{Reason: err.Error()}
	}
	key := v.currentKey()
	if !t.VerifySignature(key) {
		// The server's key may have changed (or was never fetched).
		if !v.mayRefresh() {
			if key == nil {
				return nil, &TriggerError{Reason: "the Mattermost signing key is not known yet", Unavailable: true}
			}
			return nil, &TriggerError{Reason: "signature does not verify"}
		}
		if err := v.Refresh(ctx); err != nil {
			if key == nil {
				return nil, &TriggerError{Reason: "the Mattermost signing key could not be fetched", Unavailable: true, Err: err}
			}
			return nil, &TriggerError{Reason: "signature does not verify (and the key could not be re-fetched)", Err: err}
		}
		if !t.VerifySignature(v.currentKey()) {
			return nil, &TriggerError{Reason: "signature does not verify"}
		}
	}
	if t.UserID != userID {
		return nil, &TriggerError{Reason: fmt.Sprintf("signed for user %s, not for user_id %s", t.UserID, clip(userID, 40))}
	}
	age := v.clock.Now().Sub(t.At)
	if age > TriggerMaxAge {
		return nil, &TriggerError{Reason: fmt.Sprintf("stale (%s old)", age.Truncate(time.Millisecond))}
	}
	if age < -TriggerMaxAge {
		return nil, &TriggerError{Reason: fmt.Sprintf("dated %s in the future", (-age).Truncate(time.Millisecond))}
	}
	if v.used == nil {
		return nil, &TriggerError{Reason: "no store for used triggers", Unavailable: true}
	}
	if err := v.used.UseTrigger(ctx, t.Key(), t.At.Add(TriggerMaxAge+time.Minute)); err != nil {
		if ica.ErrorCode(err) == ica.ECONFLICT {
			return nil, &TriggerError{Reason: "already used (a replay)"}
		}
		return nil, &TriggerError{Reason: "could not record the trigger as used", Unavailable: true, Err: err}
	}
	return t, nil
}

// clip shortens s for logs.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
