package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Session lifetimes.
const (
	// LinkTTL is how long a link from "/ica dashboard" can be opened.
	LinkTTL = 5 * time.Minute
	// SessionTTL is how long the session cookie a link sets is valid.
	SessionTTL = 8 * time.Hour
	// CookieName names the session cookie (Path=/dashboard).
	CookieName = "ica_dashboard"
)

// sessionDomain separates the cookie's HMAC from every other use of the
// action secret (button contexts, dialog states sign other strings).
const sessionDomain = "ica-dashboard-session:v1\x1f"

// Session is who a dashboard cookie was issued to, and until when.
type Session struct {
	UserID   string `json:"u"`
	Username string `json:"n"`
	Expires  int64  `json:"e"` // Unix seconds
}

// SignSession returns a cookie value for s: base64url(JSON) "." base64url(HMAC-SHA256).
func SignSession(secret []byte, s Session) string {
	payload, _ := json.Marshal(s)
	p := base64.RawURLEncoding.EncodeToString(payload)
	return p + "." + base64.RawURLEncoding.EncodeToString(sessionMAC(secret, p))
}

func sessionMAC(secret []byte, payload string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(sessionDomain + payload))
	return m.Sum(nil)
}

// VerifySession checks a cookie value's signature and expiry at now.
func VerifySession(secret []byte, value string, now time.Time) (*Session, error) {
	p, sig, ok := strings.Cut(value, ".")
	if !ok || len(value) > 1024 {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "the dashboard session cookie is malformed")
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, sessionMAC(secret, p)) {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "the dashboard session cookie is not one ICA signed")
	}
	raw, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "the dashboard session cookie is malformed")
	}
	var s Session
	if err := json.Unmarshal(raw, &s); err != nil || (s.UserID == "" && s.Username == "") {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "the dashboard session cookie is malformed")
	}
	if now.Unix() >= s.Expires {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "your dashboard session expired at %s", time.Unix(s.Expires, 0).UTC().Format(time.RFC3339))
	}
	return &s, nil
}

// newLinkToken returns a random token (32 bytes, base64url) and the hex
// SHA-256 under which the store keeps it.
func newLinkToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, tokenHash(token), nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// validToken reports whether s looks like a token newLinkToken made.
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}
