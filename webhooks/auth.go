package webhooks

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/ica-governance/ica"
)

// Principal is who made a request: the name recorded as the actor of every
// ledger entry the request causes.
type Principal struct {
	Name string
	Kind string // "token", "jwt"
	// Credential is the stable identity runs are bound to (scope.go).
	Credential string
	// Scope limits what the credential may touch (scope.go).
	Scope Scope
}

// Authenticator decides who a request comes from.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, error)
}

// TokenValidator checks bearer tokens that are JWTs (Entra ID / Managed
// Identity); cmd/ica adapts the entraid package to it.
type TokenValidator interface {
	ValidateToken(ctx context.Context, raw string) (actor string, err error)
}

// HashToken returns the hex SHA-256 of a token, the form the YAML config
// keeps so secrets need not be written down in clear.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// StaticTokens authenticates bearer tokens against a set of named secrets,
// kept only as SHA-256 hashes and compared in constant time.
type StaticTokens struct {
	names  []string
	hashes [][]byte
	jwt    TokenValidator
	scopes map[string]Scope
}

// NewStaticTokens builds an authenticator from name → SHA-256 hex of the
// token. jwt, when not nil, handles bearer tokens that look like JWTs.
func NewStaticTokens(hashed map[string]string, jwt TokenValidator) (*StaticTokens, error) {
	t := &StaticTokens{jwt: jwt}
	for name, h := range hashed {
		raw, err := hex.DecodeString(h)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("token %q: not a SHA-256 hex digest", name)
		}
		t.names = append(t.names, name)
		t.hashes = append(t.hashes, raw)
	}
	return t, nil
}

// Len returns the number of configured static tokens.
func (t *StaticTokens) Len() int { return len(t.names) }

// Authenticate implements Authenticator.
func (t *StaticTokens) Authenticate(r *http.Request) (*Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "missing Authorization header (Bearer token)")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "Authorization header must be \"Bearer <token>\"")
	}
	tok = strings.TrimSpace(tok)
	if name, ok := t.match(tok); ok {
		return t.principal(name), nil
	}
	if t.jwt != nil && strings.Count(tok, ".") == 2 {
		return jwtPrincipal(r.Context(), t.jwt, tok)
	}
	return nil, ica.Errorf(ica.EUNAUTHORIZED, "invalid bearer token")
}

// match compares the token's hash with every configured hash, always all of
// them, so timing tells nothing about which (if any) matched.
func (t *StaticTokens) match(tok string) (string, bool) {
	sum := sha256.Sum256([]byte(tok))
	found := -1
	for i, h := range t.hashes {
		if subtle.ConstantTimeCompare(sum[:], h) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.names[found], true
}
