package entraid_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/entraid"
)

// Policies as cmd/ica builds them.
var (
	pipelinePolicy = entraid.Policy{Name: "the pipeline API", Caller: entraid.CallerApp, AppIDs: []string{miAppID}}
	alertPolicy    = entraid.Policy{Name: "the alert intake", Caller: entraid.CallerApp,
		AppIDs: []string{entraid.ActionGroupsAppID}, RequireRoles: []string{entraid.ActionGroupsRole}}
	userPolicy = entraid.Policy{Name: "the user API", Caller: entraid.CallerUser}
)

// userClaims is a person's delegated v2.0 token for ICA: Microsoft's
// published sample (testdata/sample-access-token-v2.jwt.txt) moved into our
// tenant and audience and made current.
func userClaims(tb testing.TB) map[string]any {
	tb.Helper()
	parts := strings.Split(readFixture(tb, "sample-access-token-v2.jwt.txt"), ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(tb, err)
	var c map[string]any
	require.NoError(tb, json.Unmarshal(raw, &c))
	require.Equal(tb, "access_as_user", c["scp"], "the sample is a delegated token")
	c["tid"], c["iss"], c["aud"] = tenant, entraid.IssuerV2(tenant), apiAppID
	c["iat"], c["nbf"], c["exp"] = t0.Add(-time.Minute).Unix(), t0.Add(-time.Minute).Unix(), t0.Add(time.Hour).Unix()
	return c
}

// userClaimsV1 is the v1.0 sample, likewise (its iss tenant is malformed in
// the published sample; here it is ours).
func userClaimsV1(tb testing.TB) map[string]any {
	tb.Helper()
	parts := strings.Split(readFixture(tb, "sample-access-token-v1.jwt.txt"), ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(tb, err)
	var c map[string]any
	require.NoError(tb, json.Unmarshal(raw, &c))
	c["tid"], c["iss"], c["aud"] = tenant, entraid.IssuerV1(tenant), apiURI
	c["iat"], c["nbf"], c["exp"] = t0.Add(-time.Minute).Unix(), t0.Add(-time.Minute).Unix(), t0.Add(time.Hour).Unix()
	return c
}

func TestSurface_Validate(t *testing.T) {
	pipelineTok := func(tb testing.TB) map[string]any { return v1Claims() } // the agent's managed identity
	alertTok := func(tb testing.TB) map[string]any { return v2Claims() }    // Azure Monitor's Secure Webhook
	tests := []struct {
		name   string
		policy entraid.Policy
		claims func(tb testing.TB) map[string]any
		mod    func(c map[string]any)
		code   string // "" accepted
		msg    string
	}{
		{"pipeline MI on the pipeline API", pipelinePolicy, pipelineTok, nil, "", ""},
		{"alert token on the pipeline API", pipelinePolicy, alertTok, nil, ica.EFORBIDDEN, "caller not allowed on the pipeline API"},
		{"user token on the pipeline API", pipelinePolicy, userClaims, nil, ica.EFORBIDDEN, "not a person's delegated token"},
		{"v1 user token on the pipeline API", pipelinePolicy, userClaimsV1, nil, ica.EFORBIDDEN, "not a person's delegated token"},
		{"user token whose app is allowed, on the pipeline API", pipelinePolicy, userClaims,
			func(c map[string]any) { c["azp"] = miAppID }, ica.EFORBIDDEN, "delegated"},
		{"app token claiming idtyp user", pipelinePolicy, pipelineTok,
			func(c map[string]any) { c["idtyp"] = "user" }, ica.EFORBIDDEN, "delegated"},

		{"alert token on the alert intake", alertPolicy, alertTok, nil, "", ""},
		{"pipeline MI on the alert intake", alertPolicy, pipelineTok, nil, ica.EFORBIDDEN, "caller not allowed on the alert intake"},
		{"pipeline MI with the webhook role on the alert intake", alertPolicy, pipelineTok,
			func(c map[string]any) { c["roles"] = []string{entraid.ActionGroupsRole} }, ica.EFORBIDDEN, "caller not allowed"},
		{"action groups' app without the role", alertPolicy, alertTok,
			func(c map[string]any) { delete(c, "roles") }, ica.EFORBIDDEN, "lacks the role ActionGroupsSecureWebhook"},
		{"user token on the alert intake", alertPolicy, userClaims, nil, ica.EFORBIDDEN, "delegated"},

		{"user token on the user API", userPolicy, userClaims, nil, "", ""},
		{"v1 user token on the user API", userPolicy, userClaimsV1, nil, "", ""},
		{"app token on the user API", userPolicy, pipelineTok, nil, ica.EFORBIDDEN, "not an application token"},
		{"alert token on the user API", userPolicy, alertTok, nil, ica.EFORBIDDEN, "not an application token"},
		{"user token without oid", userPolicy, userClaims, func(c map[string]any) { delete(c, "oid") }, ica.EFORBIDDEN, "names no person"},
		{"user token for another API", userPolicy, userClaims,
			func(c map[string]any) { c["aud"] = "https://graph.microsoft.com" }, ica.EUNAUTHORIZED, "audience"},
		{"user token without the required scope", entraid.Policy{Name: "the user API", Caller: entraid.CallerUser, Scopes: []string{"ICA.Decide"}},
			userClaims, nil, ica.EFORBIDDEN, "needs one of the scopes ICA.Decide"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			s, err := e.validator(t).Surface(tt.policy)
			require.NoError(t, err)
			c := tt.claims(t)
			if tt.mod != nil {
				tt.mod(c)
			}
			raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, c)
			p, err := s.Validate(context.Background(), raw)
			if tt.code != "" {
				require.Nil(t, p)
				requireRefused(t, err, tt.code, tt.msg, raw)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tenant, p.TenantID)
			require.Equal(t, c["oid"], p.ObjectID)
		})
	}
}

func TestSurface_UserIdentity(t *testing.T) {
	e := newEnv(t)
	s, err := e.validator(t).Surface(userPolicy)
	require.NoError(t, err)
	p, err := s.Validate(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, userClaims(t)))
	require.NoError(t, err)
	require.Equal(t, "690222be-ff1a-4d56-abd1-7e4f7d38e474", p.ObjectID)
	require.Equal(t, "abeli@microsoft.com", p.UPN, "preferred_username in v2.0")
	require.Equal(t, "Abe Lincoln", p.Name)
	require.Equal(t, []string{"access_as_user"}, p.Scopes)
	require.True(t, p.IsUser())

	p, err = s.Validate(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, userClaimsV1(t)))
	require.NoError(t, err)
	require.Equal(t, "abeli@microsoft.com", p.UPN, "unique_name in v1.0")
	require.Equal(t, "02223b6b-aa1d-42d4-9ec0-1b2bb9194438", p.ObjectID)
}

// TestSurface_EmptyPolicyRefusesEverything: a surface whose policy names no
// caller refuses every token, valid ones included, without fetching keys.
func TestSurface_EmptyPolicyRefusesEverything(t *testing.T) {
	e := newEnv(t)
	s, err := e.validator(t).Surface(entraid.Policy{Name: "the pipeline API", Caller: entraid.CallerApp})
	require.NoError(t, err)
	require.False(t, s.Admits())
	for _, c := range []map[string]any{v1Claims(), v2Claims(), userClaims(t)} {
		raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, c)
		_, err := s.Validate(context.Background(), raw)
		requireRefused(t, err, ica.EFORBIDDEN, "accepts no Entra ID token", raw)
	}
	require.EqualValues(t, 0, e.idp.totalHits.Load(), "nothing fetched")
	// A required role alone names no caller either.
	s, err = e.validator(t).Surface(entraid.Policy{Name: "x", Caller: entraid.CallerApp, RequireRoles: []string{entraid.ActionGroupsRole}})
	require.NoError(t, err)
	require.False(t, s.Admits())
}

func TestSurface_Audiences(t *testing.T) {
	e := newEnv(t) // validator audiences: apiAppID, apiURI
	v := e.validator(t)
	_, err := v.Surface(entraid.Policy{Caller: entraid.CallerApp, AppIDs: []string{miAppID}, Audiences: []string{"api://other"}})
	require.Error(t, err, "a surface audience must be one of the validator's")
	_, err = v.Surface(entraid.Policy{Caller: "robot"})
	require.Error(t, err)

	s, err := v.Surface(entraid.Policy{Name: "the alert intake", Caller: entraid.CallerApp, AppIDs: []string{miAppID}, Audiences: []string{apiAppID}})
	require.NoError(t, err)
	raw := mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, v1Claims()) // aud api://ica
	_, err = s.Validate(context.Background(), raw)
	requireRefused(t, err, ica.EUNAUTHORIZED, "audience api://ica not accepted", raw)
	require.EqualValues(t, 0, e.idp.totalHits.Load(), "refused before any key lookup")
	c := v1Claims()
	c["aud"] = apiAppID
	_, err = s.Validate(context.Background(), mustSign(t, key(t, 0), map[string]any{"kid": "k0"}, c))
	require.NoError(t, err)
}
