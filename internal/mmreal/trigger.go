package mmreal

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SigningKey fetches the server's public key for trigger ids: base64 DER,
// from AsymmetricSigningPublicKey in /api/v4/config/client?format=old (a
// public endpoint: no token).
func SigningKey(tb testing.TB, url string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(url, "/")+"/api/v4/config/client?format=old", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("mmreal: client config: %v", err)
	}
	defer resp.Body.Close()
	var cfg map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("mmreal: client config: status %d, %v", resp.StatusCode, err)
	}
	key := cfg["AsymmetricSigningPublicKey"]
	if key == "" {
		tb.Fatalf("mmreal: the client config has no AsymmetricSigningPublicKey")
	}
	return key
}

// Trigger is a verified trigger_id.
type Trigger struct {
	ClientID string // what the clicking client got back as trigger_id
	UserID   string
	At       time.Time
}

// VerifyTrigger checks a trigger_id the way an integration should:
// base64("<client id>:<user id>:<unix ms>:" + base64(ASN.1 ECDSA-SHA256
// signature)), the signature over everything up to and including the third
// colon, against key (base64 DER, as SigningKey returns it).
func VerifyTrigger(key, triggerID string) (*Trigger, error) {
	der, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("signing key is a %T, not ECDSA", pub)
	}
	raw, err := base64.StdEncoding.DecodeString(triggerID)
	if err != nil {
		return nil, fmt.Errorf("trigger id is not base64: %w", err)
	}
	parts := strings.Split(string(raw), ":")
	if len(parts) != 4 {
		return nil, fmt.Errorf("trigger id has %d fields, want 4", len(parts))
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("trigger id time %q: %w", parts[2], err)
	}
	sig, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return nil, fmt.Errorf("trigger id signature is not base64: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + ":" + parts[1] + ":" + parts[2] + ":"))
	if !ecdsa.VerifyASN1(ec, sum[:], sig) {
		return nil, errors.New("trigger id signature does not verify")
	}
	return &Trigger{ClientID: parts[0], UserID: parts[1], At: time.UnixMilli(ms)}, nil
}
