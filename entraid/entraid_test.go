package entraid_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/entraid"
)

const (
	tenant      = "6e2d4f2a-1c3b-4b8e-9f10-2a7d3c4e5f60"
	otherTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	apiAppID    = "0b5c1f3e-7a2d-4c8e-9b1a-3f4e5d6c7b8a" // ICA's own app registration
	apiURI      = "api://ica"
	miAppID     = "2f1e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b" // the pipeline agent's managed identity
	miObjectID  = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	monitorApp  = "461e8683-5575-4561-ac7f-899cc907d62a" // Azure Monitor action groups' secure webhook
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// Test keys are generated once: RSA key generation is slow under -race.
var (
	keysOnce sync.Once
	testKeys []*rsa.PrivateKey
)

func key(tb testing.TB, i int) *rsa.PrivateKey {
	tb.Helper()
	keysOnce.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys = append(testKeys, k)
		}
	})
	return testKeys[i]
}

// fakeIdP serves an OIDC discovery document and a JWKS, like
// login.microsoftonline.com, and counts the requests it gets.
type fakeIdP struct {
	srv *httptest.Server

	mu       sync.Mutex
	keys     []jwkEntry
	jwksBody []byte        // when set, served instead of keys
	block    chan struct{} // when set, the JWKS handler waits for it to close

	down      atomic.Bool
	metaHits  atomic.Int32
	jwksHits  atomic.Int32
	totalHits atomic.Int32
}

type jwkEntry struct {
	kid    string
	pub    *rsa.PublicKey
	issuer string
}

func newFakeIdP(tb testing.TB, keys ...jwkEntry) *fakeIdP {
	tb.Helper()
	p := &fakeIdP{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.totalHits.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.metaHits.Add(1)
		tid := r.PathValue("tenant")
		writeJSON(w, map[string]any{
			"issuer":                                "https://login.microsoftonline.com/" + tid + "/v2.0",
			"jwks_uri":                              p.srv.URL + "/" + tid + "/discovery/v2.0/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", func(w http.ResponseWriter, r *http.Request) {
		p.totalHits.Add(1)
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		p.jwksHits.Add(1)
		p.mu.Lock()
		block, body := p.block, p.jwksBody
		var keys []map[string]any
		for _, k := range p.keys {
			m := map[string]any{
				"kty": "RSA", "use": "sig", "kid": k.kid, "x5t": k.kid,
				"n":   b64(k.pub.N.Bytes()),
				"e":   b64(big.NewInt(int64(k.pub.E)).Bytes()),
				"x5c": []string{"MIID..."},
			}
			if k.issuer != "" {
				m["issuer"] = k.issuer
			}
			keys = append(keys, m)
		}
		p.mu.Unlock()
		if block != nil {
			<-block
		}
		if body != nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
			return
		}
		writeJSON(w, map[string]any{"keys": keys})
	})
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *fakeIdP) setKeys(keys ...jwkEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = keys
}

func (p *fakeIdP) metadataURL(tid string) string {
	return p.srv.URL + "/" + tid + "/v2.0/.well-known/openid-configuration"
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func entry(tb testing.TB, i int, kid string) jwkEntry {
	return jwkEntry{kid: kid, pub: &key(tb, i).PublicKey, issuer: "https://login.microsoftonline.com/{tenantid}/v2.0"}
}

// v1Claims is an app-only v1.0 token of a managed identity, shaped like
// mi-token-claims-aks-activity-log.json (with the claims' real names and
// NumericDates as numbers, as they are in the token itself).
func v1Claims() map[string]any {
	return map[string]any{
		"aud":       apiURI,
		"iss":       "https://sts.windows.net/" + tenant + "/",
		"iat":       t0.Add(-5 * time.Minute).Unix(),
		"nbf":       t0.Add(-5 * time.Minute).Unix(),
		"exp":       t0.Add(80 * time.Minute).Unix(),
		"aio":       "k2BgYJjO8tVk8lHJ0rX7L1o8AAA=",
		"appid":     miAppID,
		"appidacr":  "2",
		"idp":       "https://sts.windows.net/" + tenant + "/",
		"idtyp":     "app",
		"oid":       miObjectID,
		"rh":        "0.AVEAddpcYt1iDkelVHMTh3_wPEZIf3kAutdPukPawfj2MBNRAAA.",
		"roles":     []string{"Pipeline.Write"},
		"sub":       miObjectID,
		"tid":       tenant,
		"uti":       "cRZ8-NDqNECeq2PmIKW8Ag",
		"ver":       "1.0",
		"xms_mirid": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/build/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ado-agent",
		"xms_tcdt":  "1589910443",
	}
}

// v2Claims is an app-only v2.0 token (aud is always the client id in v2.0),
// shaped like sample-access-token-v2 without the user claims.
func v2Claims() map[string]any {
	return map[string]any{
		"aud":    apiAppID,
		"iss":    "https://login.microsoftonline.com/" + tenant + "/v2.0",
		"iat":    t0.Add(-5 * time.Minute).Unix(),
		"nbf":    t0.Add(-5 * time.Minute).Unix(),
		"exp":    t0.Add(80 * time.Minute).Unix(),
		"aio":    "E2ZgYFj3mP7Mz1v+ZfbPtNnNAwA=",
		"azp":    monitorApp,
		"azpacr": "2",
		"idtyp":  "app",
		"oid":    "c7b0a1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
		"rh":     "I",
		"roles":  []string{"ActionGroupsSecureWebhook"},
		"sub":    "c7b0a1d2-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
		"tid":    tenant,
		"uti":    "fqiBqXLPj0eQa82S-IYFAA",
		"ver":    "2.0",
	}
}

func encodeSegment(tb testing.TB, v any) string {
	tb.Helper()
	if s, ok := v.(string); ok {
		return b64([]byte(s))
	}
	b, err := json.Marshal(v)
	require.NoError(tb, err)
	return b64(b)
}

// mustSign returns a compact JWS of claims with header hdr (alg defaults to
// RS256), signed with k for the RS/PS algorithms.
func mustSign(tb testing.TB, k *rsa.PrivateKey, hdr map[string]any, claims any) string {
	tb.Helper()
	if _, ok := hdr["alg"]; !ok {
		hdr["alg"] = "RS256"
	}
	if _, ok := hdr["typ"]; !ok {
		hdr["typ"] = "JWT"
	}
	input := encodeSegment(tb, hdr) + "." + encodeSegment(tb, claims)
	var sig []byte
	var err error
	switch hdr["alg"] {
	case "RS256":
		d := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
	case "RS512":
		d := sha512.Sum512([]byte(input))
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA512, d[:])
	case "PS256":
		d := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, d[:], nil)
	default:
		tb.Fatalf("mustSign: unsupported alg %v", hdr["alg"])
	}
	require.NoError(tb, err)
	return input + "." + b64(sig)
}

func hs256(tb testing.TB, secret []byte, hdr map[string]any, claims any) string {
	tb.Helper()
	hdr["alg"] = "HS256"
	input := encodeSegment(tb, hdr) + "." + encodeSegment(tb, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64(m.Sum(nil))
}

type env struct {
	idp   *fakeIdP
	clock *ica.FakeClock
	cfg   entraid.Config
}

// newEnv returns a fake IdP serving keys 0 ("k0") and 1 ("k1") and a config
// pointing at it.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	idp := newFakeIdP(tb, entry(tb, 0, "k0"), entry(tb, 1, "k1"))
	clock := ica.NewFakeClock(t0)
	return &env{idp: idp, clock: clock, cfg: entraid.Config{
		TenantID:    tenant,
		Audiences:   []string{apiAppID, apiURI},
		MetadataURL: idp.metadataURL(tenant),
		Clock:       clock,
	}}
}

func (e *env) validator(tb testing.TB) *entraid.Validator {
	tb.Helper()
	v, err := entraid.New(e.cfg)
	require.NoError(tb, err)
	return v
}

// requireRefused checks err is an *ica.Error with code and a message
// containing msg, and that neither the error nor its message echo the token.
func requireRefused(tb testing.TB, err error, code, msg, raw string) {
	tb.Helper()
	require.Error(tb, err)
	var ie *ica.Error
	require.True(tb, errors.As(err, &ie), "want *ica.Error, got %T: %v", err, err)
	require.Equal(tb, code, ie.Code, "error: %v", err)
	require.Contains(tb, ie.Message, msg)
	requireNoTokenIn(tb, err.Error(), raw)
}

func requireNoTokenIn(tb testing.TB, s, raw string) {
	tb.Helper()
	if len(raw) < 12 {
		return
	}
	require.NotContains(tb, s, raw)
	for _, part := range strings.Split(raw, ".") {
		if len(part) >= 12 {
			require.NotContains(tb, s, part)
		}
	}
}

func TestValidator_Validate_Claims(t *testing.T) {
	type mod func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy)
	tests := []struct {
		name  string
		base  func() map[string]any
		mod   mod
		code  string // "" = accepted
		msg   string
		fetch bool // whether the key set is fetched (refused before key lookup otherwise)
	}{
		{name: "valid v1", base: v1Claims, fetch: true},
		{name: "valid v2", base: v2Claims, fetch: true},
		{name: "valid v1 with client id audience", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { c["aud"] = apiAppID }},
		{name: "valid second key", base: v2Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { h["kid"] = "k1" }},
		{name: "valid upper-case tenant in config", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				cfg.TenantID = strings.ToUpper(tenant)
			}},
		{name: "valid audience in array", base: v2Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["aud"] = []string{"other", apiAppID}
			}},
		{name: "expired", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "token expired", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["exp"] = t0.Add(-6 * time.Minute).Unix()
			}},
		{name: "expired within skew", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["exp"] = t0.Add(-4 * time.Minute).Unix()
			}},
		{name: "expired with skew disabled", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "token expired", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["exp"] = t0.Add(-time.Second).Unix()
				cfg.Skew = -1
			}},
		{name: "expired beyond custom skew", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "token expired", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["exp"] = t0.Add(-2 * time.Minute).Unix()
				cfg.Skew = time.Minute
			}},
		{name: "no exp", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "no expiry", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "exp") }},
		{name: "exp as string", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "malformed token claims",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["exp"] = fmt.Sprint(t0.Add(time.Hour).Unix())
			}},
		{name: "not yet valid", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "not yet valid", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["nbf"] = t0.Add(6 * time.Minute).Unix()
			}},
		{name: "nbf within skew", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["nbf"] = t0.Add(4 * time.Minute).Unix()
			}},
		{name: "no nbf", base: v2Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "nbf") }},
		{name: "iat in the future", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "issued in the future", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["iat"] = t0.Add(time.Hour).Unix()
			}},
		{name: "wrong aud", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "audience https://management.core.windows.net/ not accepted",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["aud"] = "https://management.core.windows.net/"
			}},
		{name: "aud trailing slash", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "audience",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { c["aud"] = apiURI + "/" }},
		{name: "no aud", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "no audience",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "aud") }},
		{name: "wrong iss host", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["iss"] = "https://sts.evil.example/" + tenant + "/"
			}},
		{name: "v2 iss on v1 token", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["iss"] = entraid.IssuerV2(tenant)
			}},
		{name: "v1 iss on v2 token", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["iss"] = entraid.IssuerV1(tenant)
			}},
		{name: "no iss", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "iss") }},
		{name: "wrong tid", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "tenant " + otherTenant + " not accepted",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["tid"] = otherTenant
				c["iss"] = entraid.IssuerV2(otherTenant)
			}},
		{name: "iss tenant differs from tid", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["iss"] = entraid.IssuerV1(otherTenant)
			}},
		{name: "tid differs from iss tenant", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "issuer",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { c["tid"] = otherTenant }},
		{name: "tid not a GUID", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "not a GUID",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["tid"] = "common"
				c["iss"] = entraid.IssuerV2("common")
			}},
		{name: "no tid", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "no tenant",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "tid") }},
		{name: "no ver", base: v1Claims, code: ica.EUNAUTHORIZED, msg: "no version",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { delete(c, "ver") }},
		{name: "unknown ver", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "version 3.0 not supported",
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { c["ver"] = "3.0" }},
		{name: "app id allowed", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.AppIDs = []string{strings.ToUpper(miAppID)}
			}},
		{name: "app id not allowed", base: v1Claims, code: ica.EFORBIDDEN, msg: "caller not allowed", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { pol.AppIDs = []string{apiAppID} }},
		{name: "v2 azp allowed", base: v2Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { pol.AppIDs = []string{monitorApp} }},
		{name: "v2 appid claim ignored", base: v2Claims, code: ica.EFORBIDDEN, msg: "caller not allowed", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				c["appid"] = miAppID // not a v2.0 claim: only azp counts
				pol.AppIDs = []string{miAppID}
			}},
		{name: "object id allowed", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.ObjectIDs = []string{miObjectID}
			}},
		{name: "object id not allowed", base: v1Claims, code: ica.EFORBIDDEN, msg: "object id", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.ObjectIDs = []string{apiAppID}
			}},
		{name: "role required and present", base: v2Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.Roles = []string{"Pipeline.Write", "ActionGroupsSecureWebhook"}
			}},
		{name: "role required and missing", base: v2Claims, code: ica.EFORBIDDEN, msg: "role", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				delete(c, "roles")
				pol.Roles = []string{"ActionGroupsSecureWebhook"}
			}},
		{name: "role required and other role", base: v1Claims, code: ica.EFORBIDDEN, msg: "role", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { pol.Roles = []string{"Admin"} }},
		{name: "role matches though app id does not", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.AppIDs = []string{apiAppID}
				pol.Roles = []string{"Pipeline.Write"}
			}},
		{name: "neither app id nor role", base: v1Claims, code: ica.EFORBIDDEN, msg: "application or role", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) {
				pol.AppIDs = []string{apiAppID}
				pol.Roles = []string{"Admin"}
			}},
		{name: "key published for another issuer", base: v2Claims, code: ica.EUNAUTHORIZED, msg: "signing key not valid", fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { h["kid"] = "k-consumers" }},
		{name: "v1 token with tenant-bound v2 key issuer", base: v1Claims, fetch: true,
			mod: func(h, c map[string]any, cfg *entraid.Config, pol *entraid.Policy) { h["kid"] = "k-tenant" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.idp.setKeys(entry(t, 0, "k0"), entry(t, 1, "k1"),
				jwkEntry{kid: "k-consumers", pub: &key(t, 2).PublicKey, issuer: "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"},
				jwkEntry{kid: "k-tenant", pub: &key(t, 3).PublicKey, issuer: entraid.IssuerV2(tenant)})
			h, c := map[string]any{"kid": "k0"}, tt.base()
			pol := entraid.Policy{Name: "test", Caller: entraid.CallerApp}
			if tt.mod != nil {
				tt.mod(h, c, &e.cfg, &pol)
			}
			signer := map[string]int{"k0": 0, "k1": 1, "k-consumers": 2, "k-tenant": 3}[h["kid"].(string)]
			raw := mustSign(t, key(t, signer), h, c)
			require.True(t, entraid.LooksLikeJWT(raw))

			v := e.validator(t)
			verify := v.Verify
			if len(pol.AppIDs)+len(pol.ObjectIDs)+len(pol.Roles) > 0 {
				s, err := v.Surface(pol)
				require.NoError(t, err)
				verify = s.Validate
			}
			p, err := verify(context.Background(), raw)
			if tt.fetch {
				require.EqualValues(t, 1, e.idp.jwksHits.Load())
			} else {
				require.EqualValues(t, 0, e.idp.totalHits.Load(), "refused before any key lookup")
			}
			if tt.code != "" {
				require.Nil(t, p)
				requireRefused(t, err, tt.code, tt.msg, raw)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c["tid"], p.TenantID)
			require.Equal(t, c["oid"], p.ObjectID)
			require.Equal(t, c["sub"], p.Subject)
			require.Equal(t, c["ver"], p.Version)
			require.Equal(t, "app", p.IdentityType)
			require.Equal(t, time.Unix(c["exp"].(int64), 0).UTC(), p.ExpiresAt)
			if c["ver"] == "1.0" {
				require.Equal(t, miAppID, p.AppID)
				require.Equal(t, []string{"Pipeline.Write"}, p.Roles)
				require.Equal(t, c["xms_mirid"], p.ResourceID)
			} else {
				require.Equal(t, monitorApp, p.AppID)
				require.Equal(t, []string{"ActionGroupsSecureWebhook"}, p.Roles)
			}
		})
	}
}

// TestValidator_Validate_Algorithms checks that anything but RS256 is
// refused from the header alone: no key is ever fetched or used.
func TestValidator_Validate_Algorithms(t *testing.T) {
	pub := &key(t, 0).PublicKey
	der, err := x509.MarshalPKIXPublicKey(pub)
	require.NoError(t, err)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, err := json.Marshal(map[string]string{"kty": "RSA", "n": b64(pub.N.Bytes()), "e": "AQAB"})
	require.NoError(t, err)

	unsigned := func(alg any) string {
		return encodeSegment(t, map[string]any{"alg": alg, "kid": "k0", "typ": "JWT"}) + "." + encodeSegment(t, v1Claims()) + "."
	}
	tests := []struct {
		name string
		raw  string
		msg  string
	}{
		{"alg none", unsigned("none"), "algorithm none not allowed"},
		{"alg None", unsigned("None"), "algorithm None not allowed"},
		{"alg none with a signature", unsigned("none") + "c2ln", "algorithm none not allowed"},
		{"alg empty", unsigned(""), `algorithm "" not allowed`},
		{"alg missing", encodeSegment(t, map[string]any{"kid": "k0"}) + "." + encodeSegment(t, v1Claims()) + ".c2ln", `algorithm "" not allowed`},
		{"alg not a string", unsigned(256), "malformed token header"},
		{"HS256 with PEM public key as secret", hs256(t, pemKey, map[string]any{"kid": "k0"}, v1Claims()), "algorithm HS256 not allowed"},
		{"HS256 with DER public key as secret", hs256(t, der, map[string]any{"kid": "k0"}, v2Claims()), "algorithm HS256 not allowed"},
		{"HS256 with JWK as secret", hs256(t, jwkJSON, map[string]any{"kid": "k0"}, v2Claims()), "algorithm HS256 not allowed"},
		{"RS512", mustSign(t, key(t, 0), map[string]any{"alg": "RS512", "kid": "k0"}, v1Claims()), "algorithm RS512 not allowed"},
		{"PS256", mustSign(t, key(t, 0), map[string]any{"alg": "PS256", "kid": "k0"}, v2Claims()), "algorithm PS256 not allowed"},
		{"ES256", encodeSegment(t, map[string]any{"alg": "ES256", "kid": "k0"}) + "." + encodeSegment(t, v1Claims()) + ".c2ln", "algorithm ES256 not allowed"},
		{"lower-case rs256", encodeSegment(t, map[string]any{"alg": "rs256", "kid": "k0"}) + "." + encodeSegment(t, v1Claims()) + ".c2ln", "algorithm rs256 not allowed"},
		{"missing kid", mustSign(t, key(t, 0), map[string]any{}, v1Claims()), "no key id"},
		{"jku does not help without kid", mustSign(t, key(t, 0), map[string]any{"jku": "https://evil.example/keys"}, v1Claims()), "no key id"},
		{"crit header", mustSign(t, key(t, 0), map[string]any{"kid": "k0", "crit": []string{"b64"}, "b64": false}, v1Claims()), "critical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p, err := e.validator(t).Verify(context.Background(), tt.raw)
			require.Nil(t, p)
			requireRefused(t, err, ica.EUNAUTHORIZED, tt.msg, tt.raw)
			require.EqualValues(t, 0, e.idp.totalHits.Load(), "no key may be fetched for a refused algorithm")
		})
	}
}

func TestValidator_Validate_Malformed(t *testing.T) {
	good := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
	parts := strings.Split(good, ".")
	tests := []struct {
		name string
		raw  string
		msg  string
	}{
		{"empty", "", "missing token"},
		{"garbage", "not a token at all", "malformed token"},
		{"static secret", "s3cr3t-pipeline-token-0123456789", "malformed token"},
		{"two segments", parts[0] + "." + parts[1], "malformed token"},
		{"four segments", good + ".AAAA", "malformed token"},
		{"dots only", "..", "malformed token header"},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], "malformed token header"},
		{"header padded base64", parts[0] + "==." + parts[1] + "." + parts[2], "malformed token header"},
		{"header std base64", base64.StdEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k0??>"}`)) + "." + parts[1] + "." + parts[2], "malformed token header"},
		{"header not JSON", b64([]byte("RS256")) + "." + parts[1] + "." + parts[2], "malformed token header"},
		{"header JSON array", b64([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2], "malformed token header"},
		{"claims not base64", parts[0] + ".***." + parts[2], "malformed token claims"},
		{"claims not JSON", parts[0] + "." + b64([]byte("hello")) + "." + parts[2], "malformed token claims"},
		{"claims null", parts[0] + "." + b64([]byte("null")) + "." + parts[2], "no tenant"},
		{"signature not base64", parts[0] + "." + parts[1] + ".+/+/", "malformed token signature"},
		{"no signature", parts[0] + "." + parts[1] + ".", "not signed"},
		{"signature truncated", parts[0] + "." + parts[1] + "." + parts[2][:40], "invalid token signature"},
		{"signature of other key", parts[0] + "." + parts[1] + "." + strings.Split(mustSign(t, key(t, 1), map[string]any{"kid": "k0"}, v1Claims()), ".")[2], "invalid token signature"},
		{"claims tampered", parts[0] + "." + encodeSegment(t, func() map[string]any {
			c := v1Claims()
			c["roles"] = []string{"Admin"}
			return c
		}()) + "." + parts[2], "invalid token signature"},
		{"too large", parts[0] + "." + strings.Repeat("A", entraid.MaxTokenSize) + "." + parts[2], "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p, err := e.validator(t).Verify(context.Background(), tt.raw)
			require.Nil(t, p)
			requireRefused(t, err, ica.EUNAUTHORIZED, tt.msg, tt.raw)
		})
	}
}

func readFixture(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	require.NoError(tb, err)
	return strings.TrimSpace(string(b))
}

// TestValidator_Validate_Fixtures feeds Microsoft's published sample tokens
// (real format, keys changed, signatures truncated): refused cleanly.
func TestValidator_Validate_Fixtures(t *testing.T) {
	v1 := readFixture(t, "sample-access-token-v1.jwt.txt")
	v2 := readFixture(t, "sample-access-token-v2.jwt.txt")
	const sampleKid = "i6lGk3FZzxRcUb2C3nEQ7syHJlY"
	tests := []struct {
		name     string
		raw      string
		tenant   string
		aud      string
		withKid  bool // our JWKS has a key under the sample's kid
		code     string
		msg      string
		anyFetch bool
	}{
		// The v1 sample's iss tenant is malformed and differs from tid.
		{"v1 sample, its tenant", v1, "fa15d692-e9c7-4460-a743-29f2956fd429", "ef1da9d4-ff77-4c3e-a005-840c3f830745", true, ica.EUNAUTHORIZED, "issuer", false},
		{"v1 sample, our tenant", v1, tenant, apiURI, true, ica.EUNAUTHORIZED, "issuer", false},
		{"v2 sample, our tenant", v2, tenant, apiAppID, true, ica.EUNAUTHORIZED, "tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 not accepted", false},
		{"v2 sample, its tenant, other audience", v2, "72f988bf-86f1-41af-91ab-2d7cd011db47", apiAppID, true, ica.EUNAUTHORIZED, "audience", false},
		{"v2 sample, its tenant and audience, unknown kid", v2, "72f988bf-86f1-41af-91ab-2d7cd011db47", "6e74172b-be56-4843-9ff4-e66a39bb12e3", false, ica.EUNAUTHORIZED, "unknown signing key", true},
		{"v2 sample, its tenant and audience, kid of another key", v2, "72f988bf-86f1-41af-91ab-2d7cd011db47", "6e74172b-be56-4843-9ff4-e66a39bb12e3", true, ica.EUNAUTHORIZED, "invalid token signature", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.True(t, entraid.LooksLikeJWT(tt.raw))
			e := newEnv(t)
			if tt.withKid {
				e.idp.setKeys(entry(t, 0, "k0"), entry(t, 1, sampleKid))
			}
			e.cfg.TenantID, e.cfg.Audiences = tt.tenant, []string{tt.aud}
			p, err := e.validator(t).Verify(context.Background(), tt.raw)
			require.Nil(t, p)
			requireRefused(t, err, tt.code, tt.msg, tt.raw)
			require.Equal(t, tt.anyFetch, e.idp.jwksHits.Load() > 0)
		})
	}

	// The managed identity claims as Azure Activity Log renders them
	// (NumericDates as strings, long claim names): not a token's shape.
	t.Run("activity log claims, signed", func(t *testing.T) {
		var c map[string]any
		require.NoError(t, json.Unmarshal([]byte(readFixture(t, "mi-token-claims-aks-activity-log.json")), &c))
		raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, c)
		e := newEnv(t)
		_, err := e.validator(t).Verify(context.Background(), raw)
		requireRefused(t, err, ica.EUNAUTHORIZED, "malformed token claims", raw)
	})
}

func TestValidator_Validate_UnknownKid(t *testing.T) {
	e := newEnv(t)
	v := e.validator(t)
	ctx := context.Background()

	_, err := v.Verify(ctx, mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()))
	require.NoError(t, err)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
	require.EqualValues(t, 1, e.idp.metaHits.Load())

	// Right after a fetch, an unknown kid does not fetch again.
	raw := mustSign(t, key(t, 2), map[string]any{"kid": "unknown-0"}, v1Claims())
	_, err = v.Verify(ctx, raw)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key unknown-0", raw)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())

	// Once MinRefreshInterval has passed: exactly one refresh, then refusal.
	e.clock.Advance(entraid.DefaultMinRefreshInterval)
	raw = mustSign(t, key(t, 2), map[string]any{"kid": "unknown-1"}, v1Claims())
	_, err = v.Verify(ctx, raw)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key", raw)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())

	// A second unknown kid within MinRefreshInterval: no new fetch.
	e.clock.Advance(entraid.DefaultMinRefreshInterval - time.Second)
	for i := range 20 {
		raw = mustSign(t, key(t, 2), map[string]any{"kid": fmt.Sprintf("unknown-2-%d", i)}, v2Claims())
		_, err = v.Verify(ctx, raw)
		requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key", raw)
	}
	require.EqualValues(t, 2, e.idp.jwksHits.Load())

	// Known keys still work meanwhile.
	_, err = v.Verify(ctx, mustSign(t, key(t, 1), map[string]any{"kid": "k1"}, v2Claims()))
	require.NoError(t, err)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())
}

func TestValidator_Validate_UnknownKidColdCache(t *testing.T) {
	e := newEnv(t)
	raw := mustSign(t, key(t, 2), map[string]any{"kid": "nope"}, v1Claims())
	_, err := e.validator(t).Verify(context.Background(), raw)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key", raw)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
}

func TestValidator_Validate_KeyRotation(t *testing.T) {
	e := newEnv(t)
	v := e.validator(t)
	ctx := context.Background()
	old := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
	_, err := v.Verify(ctx, old)
	require.NoError(t, err)

	// Entra ID publishes a new key and drops k1.
	e.idp.setKeys(entry(t, 0, "k0"), entry(t, 2, "k2"))
	rotated := mustSign(t, key(t, 2), map[string]any{"kid": "k2"}, v2Claims())

	e.clock.Advance(time.Minute) // within MinRefreshInterval of the first fetch
	_, err = v.Verify(ctx, rotated)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key k2", rotated)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())

	e.clock.Advance(entraid.DefaultMinRefreshInterval)
	p, err := v.Verify(ctx, rotated)
	require.NoError(t, err)
	require.Equal(t, "2.0", p.Version)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())

	_, err = v.Verify(ctx, old)
	require.NoError(t, err)
	dropped := mustSign(t, key(t, 1), map[string]any{"kid": "k1"}, v1Claims())
	_, err = v.Verify(ctx, dropped)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key k1", dropped)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())
}

func TestValidator_Validate_PeriodicRefresh(t *testing.T) {
	e := newEnv(t)
	e.cfg.RefreshInterval = time.Hour
	v := e.validator(t)
	ctx := context.Background()
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
	_, err := v.Verify(ctx, raw)
	require.NoError(t, err)

	e.clock.Advance(59 * time.Minute)
	_, err = v.Verify(ctx, raw)
	require.NoError(t, err)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())

	// k0 is withdrawn; the refresh after RefreshInterval notices.
	e.idp.setKeys(entry(t, 1, "k1"))
	e.clock.Advance(time.Minute)
	_, err = v.Verify(ctx, raw)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key k0", raw)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())
}

func TestValidator_Validate_StaleWhileError(t *testing.T) {
	e := newEnv(t)
	e.cfg.RefreshInterval = time.Hour
	v := e.validator(t)
	ctx := context.Background()
	claims := v1Claims()
	claims["exp"] = t0.Add(24 * time.Hour).Unix()
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, claims)
	_, err := v.Verify(ctx, raw)
	require.NoError(t, err)
	require.EqualValues(t, 2, e.idp.totalHits.Load()) // metadata + keys

	e.idp.down.Store(true)
	e.clock.Advance(2 * time.Hour)
	_, err = v.Verify(ctx, raw)
	require.NoError(t, err, "cached keys outlive a failed refresh")
	require.EqualValues(t, 3, e.idp.totalHits.Load(), "one refresh attempted")

	// Failing refreshes are retried at most once per MinRefreshInterval.
	for range 5 {
		_, err = v.Verify(ctx, raw)
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, e.idp.totalHits.Load())
	raw2 := mustSign(t, key(t, 2), map[string]any{"kid": "k-new"}, claims)
	_, err = v.Verify(ctx, raw2)
	requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key", raw2)
	require.EqualValues(t, 3, e.idp.totalHits.Load())

	e.clock.Advance(entraid.DefaultMinRefreshInterval)
	_, err = v.Verify(ctx, raw)
	require.NoError(t, err)
	require.EqualValues(t, 4, e.idp.totalHits.Load())

	// Back up: the next refresh succeeds and picks up the new key.
	e.idp.down.Store(false)
	e.idp.setKeys(entry(t, 0, "k0"), entry(t, 2, "k-new"))
	e.clock.Advance(entraid.DefaultMinRefreshInterval)
	_, err = v.Verify(ctx, raw2)
	require.NoError(t, err)
	require.EqualValues(t, 2, e.idp.jwksHits.Load())
}

func TestValidator_Validate_NoKeysUnavailable(t *testing.T) {
	e := newEnv(t)
	e.idp.down.Store(true)
	v := e.validator(t)
	ctx := context.Background()
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())

	_, err := v.Verify(ctx, raw)
	requireRefused(t, err, ica.EUNAVAILABLE, "signing keys not available", raw)
	require.EqualValues(t, 1, e.idp.totalHits.Load())

	// Not retried on every request while the key endpoint is down.
	_, err = v.Verify(ctx, raw)
	requireRefused(t, err, ica.EUNAVAILABLE, "signing keys not available", raw)
	require.EqualValues(t, 1, e.idp.totalHits.Load())

	e.idp.down.Store(false)
	e.clock.Advance(10 * time.Second)
	_, err = v.Verify(ctx, raw)
	require.NoError(t, err)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
}

func TestValidator_Validate_Unreachable(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more
	e.cfg.JWKSURL = srv.URL + "/keys"
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
	_, err := e.validator(t).Verify(context.Background(), raw)
	requireRefused(t, err, ica.EUNAVAILABLE, "signing keys not available", raw)
}

func TestValidator_Validate_BadKeySets(t *testing.T) {
	big := []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	weak, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "RSA", "kid": "k0", "n": b64(small.N.Bytes()), "e": "AQAB"}}})
	encKey, _ := json.Marshal(map[string]any{"keys": []map[string]any{{"kty": "RSA", "use": "enc", "kid": "k0", "n": b64(key(t, 0).N.Bytes()), "e": "AQAB"}}})
	tests := []struct {
		name string
		body []byte
	}{
		{"larger than 1 MiB", big},
		{"not JSON", []byte("<html>")},
		{"no keys", []byte(`{"keys":[]}`)},
		{"only a 1024-bit key", weak},
		{"only an encryption key", encKey},
		{"keys of the wrong type", []byte(`{"keys":[{"kty":"EC","kid":"k0","crv":"P-256","x":"AA","y":"AA"}, 5, "x", null]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.idp.jwksBody = tt.body
			raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
			_, err := e.validator(t).Verify(context.Background(), raw)
			requireRefused(t, err, ica.EUNAVAILABLE, "signing keys not available", raw)
		})
	}

	t.Run("bad keys skipped, good ones kept", func(t *testing.T) {
		e := newEnv(t)
		good := map[string]any{"kty": "RSA", "use": "sig", "kid": "k0", "n": b64(key(t, 0).N.Bytes()), "e": "AQAB"}
		body, _ := json.Marshal(map[string]any{"keys": []any{
			map[string]any{"kty": "RSA", "kid": "weak", "n": b64(small.N.Bytes()), "e": "AQAB"},
			map[string]any{"kty": "RSA", "kid": "bad-n", "n": "!!", "e": "AQAB"},
			map[string]any{"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": b64(key(t, 1).N.Bytes()), "e": "AQAB"},
			"junk",
			good,
		}})
		e.idp.jwksBody = body
		v := e.validator(t)
		_, err := v.Verify(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()))
		require.NoError(t, err)
		raw := mustSign(t, key(t, 1), map[string]any{"kid": "rs512"}, v1Claims())
		_, err = v.Verify(context.Background(), raw)
		requireRefused(t, err, ica.EUNAUTHORIZED, "unknown signing key", raw)
	})
}

func TestValidator_Validate_JWKSURL(t *testing.T) {
	e := newEnv(t)
	e.cfg.MetadataURL = ""
	e.cfg.JWKSURL = e.idp.srv.URL + "/" + tenant + "/discovery/v2.0/keys"
	_, err := e.validator(t).Verify(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()))
	require.NoError(t, err)
	require.EqualValues(t, 0, e.idp.metaHits.Load(), "discovery skipped")
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
}

func TestValidator_Validate_DiscoveryDowngrade(t *testing.T) {
	// A metadata document served over https must not send us to http keys.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"jwks_uri": "http://example.invalid/keys"})
	}))
	t.Cleanup(srv.Close)
	v, err := entraid.New(entraid.Config{
		TenantID: tenant, Audiences: []string{apiURI},
		MetadataURL: srv.URL + "/meta", HTTPClient: srv.Client(),
		Clock: ica.NewFakeClock(t0),
	})
	require.NoError(t, err)
	err = v.Refresh(context.Background())
	require.Error(t, err)
	require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
	require.Contains(t, err.Error(), "not https")
}

// TestValidator_Validate_Concurrent checks that a cold cache hit by many
// requests at once is filled by one fetch.
func TestValidator_Validate_Concurrent(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	e.idp.block = block
	v := e.validator(t)
	tokens := []string{
		mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()),
		mustSign(t, key(t, 1), map[string]any{"kid": "k1"}, v2Claims()),
	}
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tokens[i%2])
			errs <- err
		})
	}
	// Let the first fetch reach the server, then release it.
	require.Eventually(t, func() bool { return e.idp.jwksHits.Load() == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	e.idp.mu.Lock()
	e.idp.block = nil
	e.idp.mu.Unlock()
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
	require.EqualValues(t, 1, e.idp.metaHits.Load())
}

// TestValidator_Validate_ContextCancelled checks that a caller can give up
// waiting for a slow fetch, and that the fetch still completes for others.
func TestValidator_Validate_ContextCancelled(t *testing.T) {
	e := newEnv(t)
	block := make(chan struct{})
	e.idp.block = block
	v := e.validator(t)
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, raw)
		done <- err
	}()
	require.Eventually(t, func() bool { return e.idp.jwksHits.Load() == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	err := <-done
	requireRefused(t, err, ica.EUNAVAILABLE, "signing keys not available", raw)
	require.ErrorIs(t, err, context.Canceled)

	e.idp.mu.Lock()
	e.idp.block = nil
	e.idp.mu.Unlock()
	close(block)
	require.NoError(t, v.Refresh(context.Background())) // joins or follows the first fetch
	_, err = v.Verify(context.Background(), raw)
	require.NoError(t, err)
}

func TestValidator_Refresh(t *testing.T) {
	e := newEnv(t)
	v := e.validator(t)
	require.NoError(t, v.Refresh(context.Background()))
	require.EqualValues(t, 1, e.idp.jwksHits.Load())
	_, err := v.Verify(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()))
	require.NoError(t, err)
	require.EqualValues(t, 1, e.idp.jwksHits.Load())

	e.idp.down.Store(true)
	err = v.Refresh(context.Background())
	require.Equal(t, ica.EUNAVAILABLE, ica.ErrorCode(err))
	_, err = v.Verify(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()))
	require.NoError(t, err, "a failed refresh keeps the cached keys")
}

func TestNew(t *testing.T) {
	ok := entraid.Config{TenantID: tenant, Audiences: []string{apiURI}}
	tests := []struct {
		name  string
		mod   func(c *entraid.Config)
		field string
	}{
		{"ok", func(c *entraid.Config) {}, ""},
		{"no tenant", func(c *entraid.Config) { c.TenantID = "" }, "TenantID"},
		{"tenant not a GUID", func(c *entraid.Config) { c.TenantID = "common" }, "TenantID"},
		{"tenant domain", func(c *entraid.Config) { c.TenantID = "contoso.onmicrosoft.com" }, "TenantID"},
		{"no audiences", func(c *entraid.Config) { c.Audiences = nil }, "Audiences"},
		{"empty audience", func(c *entraid.Config) { c.Audiences = []string{apiURI, " "} }, "Audiences"},
		{"bad metadata URL", func(c *entraid.Config) { c.MetadataURL = "file:///etc/passwd" }, "MetadataURL"},
		{"relative JWKS URL", func(c *entraid.Config) { c.JWKSURL = "/keys" }, "JWKSURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mod(&cfg)
			v, err := entraid.New(cfg)
			if tt.field == "" {
				require.NoError(t, err)
				require.NotNil(t, v)
				return
			}
			require.Nil(t, v)
			require.Equal(t, ica.EINVALID, ica.ErrorCode(err))
			require.Equal(t, tt.field, ica.ErrorField(err))
		})
	}
}

func TestLooksLikeJWT(t *testing.T) {
	good := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims())
	tests := []struct {
		in   string
		want bool
	}{
		{good, true},
		{readFixture(t, "sample-access-token-v1.jwt.txt"), true},
		{readFixture(t, "sample-access-token-v2.jwt.txt"), true},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", true}, // unsigned: Validate refuses it with a reason
		{"", false},
		{"s3cr3t-static-token", false},
		{"abc.def.ghi", false}, // header is not JSON
		{"a.b", false},
		{"eyJhbGciOiJub25lIn0..sig", false},
		{".eyJzdWIiOiJ4In0.sig", false},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.a.b", false},
		{"eyJhbGciOiJub25lIn0=.eyJzdWIiOiJ4In0.sig", false},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0 .sig", false},
		{"Bearer " + good, false},
		{strings.Repeat("A", entraid.MaxTokenSize+1), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, entraid.LooksLikeJWT(tt.in), "%.40q", tt.in)
	}
}
