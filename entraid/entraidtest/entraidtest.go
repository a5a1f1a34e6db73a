// Package entraidtest is a fake Microsoft Entra ID for tests: it serves an
// OpenID Connect discovery document and a key set, like
// login.microsoftonline.com, and signs access tokens of the shapes Entra ID
// issues (application and managed identity tokens, delegated user tokens).
package entraidtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Kid is the key id of the fake's one signing key.
const Kid = "entraidtest-k0"

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
)

// signingKey is generated once per process: RSA key generation is slow
// under -race.
func signingKey() *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		key = k
	})
	return key
}

// IdP is the fake identity provider.
type IdP struct {
	srv *httptest.Server
}

// New starts a fake IdP that serves every tenant, closed with the test.
func New(tb testing.TB) *IdP {
	tb.Helper()
	p := &IdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		tid := r.PathValue("tenant")
		writeJSON(w, map[string]any{"issuer": "https://login.microsoftonline.com/" + tid + "/v2.0",
			"jwks_uri": p.srv.URL + "/" + tid + "/discovery/v2.0/keys", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", func(w http.ResponseWriter, r *http.Request) {
		pub := signingKey().PublicKey
		writeJSON(w, map[string]any{"keys": []map[string]any{{"kty": "RSA", "use": "sig", "kid": Kid,
			"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
			"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}}})
	})
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	return p
}

// MetadataURL is the discovery document of tenant (entraid.Config.MetadataURL,
// ICA_ENTRA_METADATA_URL).
func (p *IdP) MetadataURL(tenant string) string {
	return p.srv.URL + "/" + tenant + "/v2.0/.well-known/openid-configuration"
}

// Sign returns claims as an RS256 compact JWS signed by the fake's key.
func (p *IdP) Sign(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	hdr, err := json.Marshal(map[string]any{"typ": "JWT", "alg": "RS256", "kid": Kid})
	if err != nil {
		tb.Fatal(err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	input := b64(hdr) + "." + b64(body)
	d := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signingKey(), crypto.SHA256, d[:])
	if err != nil {
		tb.Fatal(err)
	}
	return input + "." + b64(sig)
}

// AppClaims are a v2.0 application (or managed identity) token's claims:
// appID is the caller's application id (azp), oid its service principal.
func AppClaims(tenant, audience, appID, oid string, roles ...string) map[string]any {
	c := base(tenant, audience)
	c["azp"], c["azpacr"], c["idtyp"], c["oid"], c["sub"] = appID, "2", "app", oid, oid
	if len(roles) > 0 {
		c["roles"] = roles
	}
	return c
}

// UserClaims are a person's delegated v2.0 token's claims (scp present),
// as Azure CLI gets them for ICA's audience.
func UserClaims(tenant, audience, oid, upn, name string) map[string]any {
	c := base(tenant, audience)
	c["azp"], c["azpacr"], c["oid"], c["sub"] = "04b07795-8ddb-461a-bbee-02f9e1bf7b46", "0", oid, "pairwise-"+oid
	c["scp"], c["preferred_username"], c["name"] = "user_impersonation", upn, name
	return c
}

func base(tenant, audience string) map[string]any {
	now := time.Now()
	return map[string]any{"aud": audience, "iss": "https://login.microsoftonline.com/" + tenant + "/v2.0", "tid": tenant,
		"ver": "2.0", "iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
