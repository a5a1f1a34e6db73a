package bot

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// memUsed is an in-memory UsedTriggers.
type memUsed struct {
	mu   sync.Mutex
	used map[string]time.Time
	err  error
}

func (m *memUsed) UseTrigger(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.used == nil {
		m.used = map[string]time.Time{}
	}
	if _, ok := m.used[key]; ok {
		return ica.Errorf(ica.ECONFLICT, "used")
	}
	m.used[key] = until
	return nil
}

func genKey(t testing.TB) (*ecdsa.PrivateKey, string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return k, base64.StdEncoding.EncodeToString(der)
}

// signTrigger makes a trigger_id the way Mattermost does.
func signTrigger(t testing.TB, k *ecdsa.PrivateKey, clientID, userID string, at time.Time) string {
	data := clientID + ":" + userID + ":" + strconv.FormatInt(at.UnixMilli(), 10) + ":"
	sum := sha256.Sum256([]byte(data))
	sig, err := ecdsa.SignASN1(rand.Reader, k, sum[:])
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString([]byte(data + base64.StdEncoding.EncodeToString(sig)))
}

type capture struct {
	ReceivedAt float64 `json:"received_at_unix"`
	BodyRaw    string  `json:"body_raw"`
}

func readCapture(t *testing.T, name string) (model.PostActionIntegrationRequest, time.Time) {
	raw, err := os.ReadFile("testdata/" + name)
	require.NoError(t, err)
	var c capture
	require.NoError(t, json.Unmarshal(raw, &c))
	var req model.PostActionIntegrationRequest
	require.NoError(t, json.Unmarshal([]byte(c.BodyRaw), &req))
	return req, time.UnixMilli(int64(c.ReceivedAt * 1000)).UTC()
}

// TestTrigger_RealCaptures verifies the trigger_ids a real Mattermost 6.7.2
// sent against its published key, and refuses them with any other key.
func TestTrigger_RealCaptures(t *testing.T) {
	keyText, err := os.ReadFile("testdata/asymmetric-signing-public-key.txt")
	require.NoError(t, err)
	key, err := ParseSigningKey(string(keyText))
	require.NoError(t, err)
	_, otherKey := genKey(t)
	for _, name := range []string{"action-request.json", "action-request-reject.json", "action-request-by-bot.json"} {
		t.Run(name, func(t *testing.T) {
			req, at := readCapture(t, name)
			tr, err := ParseTrigger(req.TriggerId)
			require.NoError(t, err)
			require.Equal(t, req.UserId, tr.UserID)
			require.WithinDuration(t, at, tr.At, time.Second)
			require.True(t, tr.VerifySignature(key))

			clock := ica.NewFakeClock(at)
			v, err := NewTriggerVerifier(string(keyText), nil, &memUsed{}, clock)
			require.NoError(t, err)
			got, err := v.Verify(context.Background(), req.TriggerId, req.UserId)
			require.NoError(t, err)
			require.Equal(t, tr.Key(), got.Key())

			v2, err := NewTriggerVerifier(otherKey, nil, &memUsed{}, clock)
			require.NoError(t, err)
			_, err = v2.Verify(context.Background(), req.TriggerId, req.UserId)
			requireReason(t, err, "signature does not verify")
		})
	}
}

func requireReason(t *testing.T, err error, reason string) {
	t.Helper()
	var te *TriggerError
	require.True(t, errors.As(err, &te), "want a TriggerError, got %v", err)
	require.Contains(t, te.Reason, reason)
}

func TestTriggerVerifier_Refusals(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := ica.NewFakeClock(now)
	k, pub := genKey(t)
	other, _ := genKey(t)
	user, someone := model.NewId(), model.NewId()
	used := &memUsed{}
	v, err := NewTriggerVerifier(pub, nil, used, clock)
	require.NoError(t, err)
	ctx := context.Background()

	good := signTrigger(t, k, model.NewId(), user, now.Add(-2*time.Second))
	_, err = v.Verify(ctx, good, user)
	require.NoError(t, err)

	for _, tc := range []struct {
		name, trigger, user, reason string
	}{
		{"missing", "", user, "no trigger_id"},
		{"not base64", "%%%", user, "malformed"},
		{"three fields", base64.StdEncoding.EncodeToString([]byte(model.NewId() + ":" + user + ":1")), user, "malformed"},
		{"forged signature", base64.StdEncoding.EncodeToString([]byte(model.NewId() + ":" + user + ":" + strconv.FormatInt(now.UnixMilli(), 10) + ":" + base64.StdEncoding.EncodeToString([]byte("0123456789")))), user, "signature"},
		{"another key", signTrigger(t, other, model.NewId(), user, now), user, "signature does not verify"},
		{"another user's trigger", signTrigger(t, k, model.NewId(), someone, now), user, "signed for user"},
		{"replayed", good, user, "already used"},
		{"stale", signTrigger(t, k, model.NewId(), user, now.Add(-TriggerMaxAge-time.Second)), user, "stale"},
		{"from the future", signTrigger(t, k, model.NewId(), user, now.Add(TriggerMaxAge+time.Second)), user, "future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(ctx, tc.trigger, tc.user)
			requireReason(t, err, tc.reason)
		})
	}

	// Clock skew within the limit is accepted both ways.
	_, err = v.Verify(ctx, signTrigger(t, k, model.NewId(), user, now.Add(20*time.Second)), user)
	require.NoError(t, err)
	_, err = v.Verify(ctx, signTrigger(t, k, model.NewId(), user, now.Add(-29*time.Second)), user)
	require.NoError(t, err)

	// A tampered signature (one bit) fails.
	raw, _ := base64.StdEncoding.DecodeString(signTrigger(t, k, model.NewId(), user, now))
	parts := strings.Split(string(raw), ":")
	sig, _ := base64.StdEncoding.DecodeString(parts[3])
	sig[len(sig)-1] ^= 1
	parts[3] = base64.StdEncoding.EncodeToString(sig)
	_, err = v.Verify(ctx, base64.StdEncoding.EncodeToString([]byte(strings.Join(parts, ":"))), user)
	requireReason(t, err, "signature")

	// The store down: refused as "try again", nothing recorded.
	used.err = ica.Unavailable("down", nil)
	_, err = v.Verify(ctx, signTrigger(t, k, model.NewId(), user, now), user)
	var te *TriggerError
	require.ErrorAs(t, err, &te)
	require.True(t, te.Unavailable)
}

// TestTriggerVerifier_FetchAndRefresh: without a configured key the
// verifier fetches the server's key, and re-fetches it (rate-limited) when
// a signature fails, so a rotated server key heals by itself.
func TestTriggerVerifier_FetchAndRefresh(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := ica.NewFakeClock(now)
	k1, pub1 := genKey(t)
	k2, pub2 := genKey(t)
	served, fetches := pub1, 0
	fetch := func(context.Context) (string, error) { fetches++; return served, nil }
	v, err := NewTriggerVerifier("", fetch, &memUsed{}, clock)
	require.NoError(t, err)
	ctx := context.Background()
	user := model.NewId()

	_, err = v.Verify(ctx, signTrigger(t, k1, model.NewId(), user, now), user)
	require.NoError(t, err, "the key is fetched when first needed")
	require.Equal(t, 1, fetches)

	served = pub2 // the server's key rotates
	clock.Advance(2 * keyRefreshEvery)
	_, err = v.Verify(ctx, signTrigger(t, k2, model.NewId(), user, clock.Now()), user)
	require.NoError(t, err, "a failure re-fetches the key")
	require.Equal(t, 2, fetches)

	// Forgeries do not make ICA hammer the server: at most one fetch a minute.
	for range 5 {
		_, err = v.Verify(ctx, signTrigger(t, k1, model.NewId(), user, clock.Now()), user)
		requireReason(t, err, "signature does not verify")
	}
	require.Equal(t, 2, fetches)

	// A configured key is never fetched.
	v, err = NewTriggerVerifier(pub1, func(context.Context) (string, error) { t.Fatal("fetched"); return "", nil }, &memUsed{}, clock)
	require.NoError(t, err)
	_, err = v.Verify(ctx, signTrigger(t, k2, model.NewId(), user, clock.Now()), user)
	requireReason(t, err, "signature does not verify")

	_, err = NewTriggerVerifier("bm90IGEga2V5", nil, &memUsed{}, clock)
	require.ErrorContains(t, err, "ICA_MATTERMOST_SIGNING_KEY")
}

func FuzzParseTrigger(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.Add(signTrigger(f, k, model.NewId(), model.NewId(), time.Now()))
	f.Add("")
	f.Add("Ojo6Og==")
	f.Add(base64.StdEncoding.EncodeToString([]byte("a:b:c:d")))
	if raw, err := os.ReadFile("testdata/action-request.json"); err == nil {
		var c capture
		if json.Unmarshal(raw, &c) == nil {
			var req model.PostActionIntegrationRequest
			if json.Unmarshal([]byte(c.BodyRaw), &req) == nil {
				f.Add(req.TriggerId)
			}
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		tr, err := ParseTrigger(s)
		if err != nil {
			if tr != nil {
				t.Fatal("a refused trigger was returned")
			}
			return
		}
		if !isMattermostID(tr.ClientID) || !isMattermostID(tr.UserID) || tr.At.UnixMilli() <= 0 {
			t.Fatalf("accepted %q as %+v", s, tr)
		}
		if !strings.HasPrefix(tr.signed, tr.ClientID+":"+tr.UserID+":") || !strings.HasSuffix(tr.signed, ":") {
			t.Fatalf("signed part %q", tr.signed)
		}
		// Re-encoding the parsed trigger gives the same trigger.
		again, err := ParseTrigger(base64.StdEncoding.EncodeToString([]byte(tr.signed + base64.StdEncoding.EncodeToString(tr.sig))))
		if err != nil || again.Key() != tr.Key() {
			t.Fatalf("re-encoded %q: %v", s, err)
		}
	})
}
