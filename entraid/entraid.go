// Package entraid validates Microsoft Entra ID access tokens (v1.0 and v2.0,
// Managed Identity, application and delegated user tokens) presented as
// bearer tokens by Azure Pipelines, by Azure Monitor action groups' Secure
// Webhook and by people calling ICA's API.
//
// A Validator proves that a token is authentic: signed by the tenant, for
// one of ICA's audiences, current. It authorises nothing. Each surface of
// ICA (pipelines, alerts, people) has its own Surface, made from the shared
// Validator with its own Policy: which audiences, which kind of caller
// (application or person) and which applications, identities or roles. A
// policy that names no caller refuses every token, so an empty setting
// never admits the whole tenant.
//
// Only RS256 tokens signed by a key from the tenant's published JWKS are
// accepted. The key set is fetched lazily, cached, refreshed every
// RefreshInterval, and kept when a refresh fails. A token whose kid is not
// in the cache triggers at most one refresh per MinRefreshInterval, so a
// flood of forged tokens cannot turn into a flood of requests to Entra ID.
//
// Nothing in a token decides where keys come from: jku, x5u and x5c headers
// are ignored, the key set URL comes from configuration only.
package entraid

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
)

// Defaults for Config.
const (
	DefaultSkew               = 5 * time.Minute
	DefaultRefreshInterval    = 24 * time.Hour
	DefaultMinRefreshInterval = 5 * time.Minute
	DefaultFetchTimeout       = 10 * time.Second

	// MaxTokenSize bounds the raw token. Entra ID access tokens are a few KB;
	// group overage keeps even large ones well under this.
	MaxTokenSize = 32 << 10
	// maxDocumentSize bounds the discovery and JWKS documents.
	maxDocumentSize = 1 << 20
)

// Token versions, as found in the ver claim.
const (
	Version1 = "1.0"
	Version2 = "2.0"
)

// Config configures a Validator.
type Config struct {
	// TenantID is the directory (tenant) GUID. Required; tokens issued by
	// other tenants are refused.
	TenantID string
	// Audiences are the accepted aud values: the API's application (client)
	// id and/or its App ID URI (e.g. api://ica). At least one is required.
	// A Surface may narrow them (Policy.Audiences).
	Audiences []string

	// MetadataURL is the OpenID Connect discovery document whose jwks_uri
	// names the key set. Default:
	// https://login.microsoftonline.com/{tenant}/v2.0/.well-known/openid-configuration
	// (the v1.0 and v2.0 endpoints of a tenant publish the same keys).
	MetadataURL string
	// JWKSURL, when set, is used directly and discovery is skipped.
	JWKSURL string

	// Skew is the clock skew tolerated on exp, nbf and iat. Default 5 min;
	// a negative value means none.
	Skew time.Duration
	// RefreshInterval is how long a fetched key set is used before it is
	// fetched again. Default 24 h, as Microsoft recommends.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches of the key
	// set: an unknown kid triggers a refresh only when the last fetch is
	// at least this old. Default 5 min.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one refresh (discovery plus key set). Default 10 s.
	FetchTimeout time.Duration

	// HTTPClient fetches the metadata and key set. Default: a client with
	// FetchTimeout as its timeout.
	HTTPClient *http.Client
	// Clock is the source of time for token lifetimes and refresh
	// scheduling. Default ica.SystemClock.
	Clock ica.Clock
}

// Principal is the verified caller a token stands for.
type Principal struct {
	// Subject is the sub claim (pairwise per application).
	Subject string
	// ObjectID is the caller's immutable object id (oid): for a Managed
	// Identity, its service principal.
	ObjectID string
	// AppID is the caller's application id (appid in v1.0, azp in v2.0).
	AppID string
	// TenantID is the tenant (tid) that issued the token.
	TenantID string
	// Name is the name claim, when the token has one (user tokens).
	Name string
	// UPN is the person's sign-in name: the upn claim, else
	// preferred_username (v2.0), else unique_name (v1.0). It is for display
	// and exclusion only: names never grant (DESIGN "Identities").
	UPN string
	// Roles are the app roles granted to the caller.
	Roles []string
	// Version is the token version: "1.0" or "2.0".
	Version string

	// Scopes are the delegated scopes (scp) of a user token; empty for
	// application and Managed Identity tokens.
	Scopes []string
	// IdentityType is the idtyp claim ("app" or "user") when present.
	IdentityType string
	// ResourceID is the xms_mirid claim of a Managed Identity token: the
	// Azure resource id of the identity.
	ResourceID string
	// ExpiresAt is the token's expiry.
	ExpiresAt time.Time
}

// IsUser reports whether the token is a person's delegated token: it
// carries delegated scopes (scp), or says so in idtyp.
func (p *Principal) IsUser() bool {
	return len(p.Scopes) > 0 || strings.EqualFold(p.IdentityType, "user")
}

// Validator verifies Entra ID access tokens. It is safe for concurrent use.
type Validator struct {
	tenant    string // lower-case GUID
	audiences map[string]bool
	skew      time.Duration
	clock     ica.Clock
	keys      *keyCache
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// isGUID reports whether s is a GUID in its usual 8-4-4-4-12 form.
func isGUID(s string) bool { return guidRE.MatchString(s) }

// IssuerV1 returns the issuer of v1.0 tokens from tenant.
func IssuerV1(tenant string) string { return "https://sts.windows.net/" + tenant + "/" }

// IssuerV2 returns the issuer of v2.0 tokens from tenant.
func IssuerV2(tenant string) string { return "https://login.microsoftonline.com/" + tenant + "/v2.0" }

// New checks cfg and returns a Validator. It does not fetch anything: the
// key set is fetched by the first Validate (or Refresh).
func New(cfg Config) (*Validator, error) {
	if !isGUID(cfg.TenantID) {
		return nil, ica.FieldErrorf(ica.EINVALID, "TenantID", "entraid: tenant id must be a GUID")
	}
	tenant := strings.ToLower(cfg.TenantID)
	if len(cfg.Audiences) == 0 {
		return nil, ica.FieldErrorf(ica.EINVALID, "Audiences", "entraid: at least one audience is required")
	}
	v := &Validator{
		tenant:    tenant,
		audiences: make(map[string]bool),
		skew:      cfg.Skew,
		clock:     cfg.Clock,
	}
	for _, a := range cfg.Audiences {
		if strings.TrimSpace(a) == "" {
			return nil, ica.FieldErrorf(ica.EINVALID, "Audiences", "entraid: empty audience")
		}
		v.audiences[a] = true
	}
	switch {
	case cfg.Skew == 0:
		v.skew = DefaultSkew
	case cfg.Skew < 0:
		v.skew = 0
	}
	if v.clock == nil {
		v.clock = ica.SystemClock{}
	}

	kc := &keyCache{
		clock:       v.clock,
		refresh:     orDefault(cfg.RefreshInterval, DefaultRefreshInterval),
		minRefresh:  orDefault(cfg.MinRefreshInterval, DefaultMinRefreshInterval),
		timeout:     orDefault(cfg.FetchTimeout, DefaultFetchTimeout),
		client:      cfg.HTTPClient,
		jwksURL:     cfg.JWKSURL,
		metadataURL: cfg.MetadataURL,
		failBackoff: defaultFailureBackoff,
	}
	if kc.client == nil {
		kc.client = &http.Client{Timeout: kc.timeout}
	}
	if kc.failBackoff > kc.minRefresh {
		kc.failBackoff = kc.minRefresh
	}
	if kc.jwksURL == "" && kc.metadataURL == "" {
		kc.metadataURL = "https://login.microsoftonline.com/" + tenant + "/v2.0/.well-known/openid-configuration"
	}
	for field, u := range map[string]string{"JWKSURL": kc.jwksURL, "MetadataURL": kc.metadataURL} {
		if u == "" {
			continue
		}
		if err := checkURL(u); err != nil {
			return nil, ica.FieldErrorf(ica.EINVALID, field, "entraid: %v", err)
		}
	}
	v.keys = kc
	return v, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func lowerSet(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			m[strings.ToLower(s)] = true
		}
	}
	return m
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL")
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("URL must be absolute http(s)")
	}
	return nil
}

// Refresh fetches the key set now (or waits for a fetch already under way),
// ignoring MinRefreshInterval. Use it to warm the cache at start-up.
func (v *Validator) Refresh(ctx context.Context) error {
	return v.keys.forceRefresh(ctx)
}

// LooksLikeJWT reports whether token has the shape of a compact JWS: three
// dot-separated base64url segments whose first decodes to a JSON object. It
// lets the caller tell a JWT from a static bearer secret without validating
// anything; the signature segment may be empty so that unsigned tokens are
// refused by Validate with a clear reason.
func LooksLikeJWT(token string) bool {
	if len(token) == 0 || len(token) > MaxTokenSize {
		return false
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			if !isB64URL(p[i]) {
				return false
			}
		}
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	h = []byte(strings.TrimLeft(string(h), " \t\r\n"))
	return len(h) > 0 && h[0] == '{'
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// audience accepts aud as a string (what Entra ID issues) or an array.
type audience []string

func (a *audience) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*a = audience{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*a = list
	return nil
}

// numericDate is a JWT NumericDate: seconds since the epoch, as a JSON number.
type numericDate struct{ time.Time }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("NumericDate is not a number")
	}
	// Year 1970..~5138: outside that the value is junk, and time.Unix would
	// overflow on NaN or huge values.
	if math.IsNaN(f) || f < 0 || f > 1e11 {
		return fmt.Errorf("NumericDate out of range")
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

type claims struct {
	Aud   audience     `json:"aud"`
	Iss   string       `json:"iss"`
	Tid   string       `json:"tid"`
	Ver   string       `json:"ver"`
	Exp   *numericDate `json:"exp"`
	Nbf   *numericDate `json:"nbf"`
	Iat   *numericDate `json:"iat"`
	Sub   string       `json:"sub"`
	Oid   string       `json:"oid"`
	AppID string       `json:"appid"`
	Azp   string       `json:"azp"`
	Name  string       `json:"name"`
	Roles []string     `json:"roles"`
	Scp   string       `json:"scp"`
	Idtyp string       `json:"idtyp"`
	Mirid string       `json:"xms_mirid"`

	Upn               string `json:"upn"`
	PreferredUsername string `json:"preferred_username"`
	UniqueName        string `json:"unique_name"`
}

// refuse returns the error for a token that failed validation.
func refuse(format string, args ...any) *ica.Error {
	return ica.Errorf(ica.EUNAUTHORIZED, format, args...)
}

// show renders an attacker-chosen claim value for an error message: short,
// and quoted unless it is made of harmless characters only.
func show(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "…"
		return strconv.Quote(s)
	}
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isB64URL(c) || c == '.' || c == ':' || c == '/') {
			return strconv.Quote(s)
		}
	}
	return s
}

// Verify checks that raw (the bearer token, without "Bearer ") is an
// authentic, current token of the tenant for one of the configured
// audiences, and returns the caller it stands for. It authorises nothing:
// a surface decides who may use it with a Policy (see Surface). Failures
// are *ica.Error: EUNAUTHORIZED for a token that is not acceptable,
// EUNAVAILABLE when no signing keys could be fetched. No error message
// contains the token.
func (v *Validator) Verify(ctx context.Context, raw string) (*Principal, error) {
	return v.verify(ctx, raw, v.audiences)
}

func (v *Validator) verify(ctx context.Context, raw string, audiences map[string]bool) (*Principal, error) {
	if raw == "" {
		return nil, refuse("missing token")
	}
	if len(raw) > MaxTokenSize {
		return nil, refuse("token too large")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, refuse("malformed token: not a compact JWS")
	}

	// The header decides nothing until alg is known to be RS256.
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, refuse("malformed token header")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, refuse("malformed token header")
	}
	if h.Alg != "RS256" {
		return nil, refuse("algorithm %s not allowed", show(h.Alg))
	}
	if len(h.Crit) > 0 {
		return nil, refuse("critical header extensions not supported")
	}
	if h.Kid == "" {
		return nil, refuse("token has no key id (kid)")
	}

	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, refuse("malformed token claims")
	}
	var c claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, refuse("malformed token claims")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, refuse("malformed token signature")
	}
	if len(sig) == 0 {
		return nil, refuse("token is not signed")
	}

	// Cheap checks of whom the token is from and for, before any key is
	// looked up: a token meant for another tenant or API must not make us
	// fetch keys.
	if err := v.checkIssuer(&c); err != nil {
		return nil, err
	}
	if err := checkAudience(&c, audiences); err != nil {
		return nil, err
	}

	key, err := v.keys.key(ctx, h.Kid)
	if err != nil {
		return nil, err
	}
	if key.issuer != "" {
		// A key published with an issuer signs only for that issuer
		// ({tenantid} is a placeholder for the token's tenant). v1.0 tokens
		// are compared through their v2.0 form, as Microsoft.IdentityModel
		// does, since keys carry v2.0 issuers.
		want := strings.ReplaceAll(key.issuer, "{tenantid}", c.Tid)
		if want != c.Iss && want != IssuerV2(c.Tid) {
			return nil, refuse("signing key not valid for this issuer")
		}
	}
	digest := sha256.Sum256([]byte(raw[:len(parts[0])+1+len(parts[1])]))
	if err := rsa.VerifyPKCS1v15(key.pub, crypto.SHA256, digest[:], sig); err != nil {
		return nil, refuse("invalid token signature")
	}

	if err := v.checkTimes(&c); err != nil {
		return nil, err
	}

	p := &Principal{
		Subject:      c.Sub,
		ObjectID:     c.Oid,
		TenantID:     c.Tid,
		Name:         c.Name,
		UPN:          firstNonEmpty(c.Upn, c.PreferredUsername, c.UniqueName),
		Roles:        c.Roles,
		Version:      c.Ver,
		Scopes:       strings.Fields(c.Scp),
		IdentityType: c.Idtyp,
		ResourceID:   c.Mirid,
		ExpiresAt:    c.Exp.Time,
	}
	if c.Ver == Version1 {
		p.AppID = c.AppID
	} else {
		p.AppID = c.Azp
	}
	return p, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkIssuer checks ver, tid and iss together: iss must be the form of its
// version with exactly the tid claim, and tid must be the configured tenant.
func (v *Validator) checkIssuer(c *claims) error {
	if c.Tid == "" {
		return refuse("token has no tenant (tid)")
	}
	if !isGUID(c.Tid) {
		return refuse("token tenant (tid) is not a GUID")
	}
	var iss string
	switch c.Ver {
	case Version1:
		iss = IssuerV1(c.Tid)
	case Version2:
		iss = IssuerV2(c.Tid)
	case "":
		return refuse("token has no version (ver)")
	default:
		return refuse("token version %s not supported", show(c.Ver))
	}
	if c.Iss != iss {
		return refuse("issuer %s not accepted for a v%s token from its tenant", show(c.Iss), c.Ver)
	}
	if !strings.EqualFold(c.Tid, v.tenant) {
		return refuse("tenant %s not accepted", show(c.Tid))
	}
	return nil
}

func checkAudience(c *claims, audiences map[string]bool) error {
	if len(c.Aud) == 0 {
		return refuse("token has no audience (aud)")
	}
	for _, a := range c.Aud {
		if audiences[a] {
			return nil
		}
	}
	if len(c.Aud) == 1 {
		return refuse("audience %s not accepted", show(c.Aud[0]))
	}
	return refuse("audience not accepted")
}

func (v *Validator) checkTimes(c *claims) error {
	now := v.clock.Now()
	if c.Exp == nil {
		return refuse("token has no expiry (exp)")
	}
	if !now.Before(c.Exp.Add(v.skew)) {
		return refuse("token expired")
	}
	if c.Nbf != nil && now.Add(v.skew).Before(c.Nbf.Time) {
		return refuse("token not yet valid")
	}
	if c.Iat != nil && now.Add(v.skew).Before(c.Iat.Time) {
		return refuse("token issued in the future")
	}
	return nil
}
