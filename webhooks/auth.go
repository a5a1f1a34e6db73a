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
	Kind string // "token", "jwt", "user"
	// Person is set for a person authenticated by their own delegated
	// Entra ID token (UserAuth).
	Person *Person
	// Credential is the stable identity runs are bound to (scope.go).
	Credential string
	// Scope limits what the credential may touch (scope.go).
	Scope Scope
}

// Person is the human a delegated Entra ID token stands for. TenantID and
// ObjectID (tid + oid) identify them; UPN and Name are for display and for
// excluding (a requester may not approve), never for granting.
type Person struct {
	TenantID string `json:"tid"`
	ObjectID string `json:"oid"`
	UPN      string `json:"upn,omitempty"`
	Name     string `json:"name,omitempty"`
}

// ID is the person's stable identity: "entra:<tid>/<oid>".
func (p *Person) ID() string { return "entra:" + p.TenantID + "/" + p.ObjectID }

// PersonValidator checks a person's delegated Entra ID token for ICA's own
// audience and refuses application tokens (cmd/ica adapts the entraid
// package's user surface to it).
type PersonValidator interface {
	ValidatePerson(ctx context.Context, raw string) (*Person, error)
}

// UserAuth authenticates people calling the API with their own delegated
// Entra ID access token (az account get-access-token --resource <ICA's app
// id URI>). Static tokens and application tokens are refused. The
// principal's Name, the ledger actor, is "entra:<tid>/<oid>"; its Person
// carries the UPN and display name.
type UserAuth struct{ v PersonValidator }

var _ Authenticator = (*UserAuth)(nil)

// NewUserAuth returns the authenticator of the user surface; v nil refuses
// every request, saying what to configure.
func NewUserAuth(v PersonValidator) *UserAuth { return &UserAuth{v: v} }

// Authenticate implements Authenticator.
func (u *UserAuth) Authenticate(r *http.Request) (*Principal, error) {
	if u.v == nil {
		return nil, ica.Errorf(ica.EFORBIDDEN, "the user API is not configured: set ICA_ENTRA_TENANT_ID and ICA_ENTRA_AUDIENCES (or ICA_ENTRA_USER_AUDIENCES)")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "missing Authorization header (Bearer <your Entra ID access token for ICA>)")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "Authorization header must be \"Bearer <token>\"")
	}
	if strings.Count(tok, ".") != 2 {
		return nil, ica.Errorf(ica.EUNAUTHORIZED, "this endpoint accepts only a person's Entra ID access token, not a static token")
	}
	p, err := u.v.ValidatePerson(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	return &Principal{Name: p.ID(), Kind: "user", Person: p}, nil
}

// PersonOf returns the person a request was authenticated as, or nil.
func PersonOf(ctx context.Context) *Person {
	if p := PrincipalOf(ctx); p != nil {
		return p.Person
	}
	return nil
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
