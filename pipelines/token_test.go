package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/pipelines"
)

type fakeCredential struct{ scopes [][]string }

func (c *fakeCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scopes = append(c.scopes, o.Scopes)
	return azcore.AccessToken{Token: testToken, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestAzureTokenSource_AsksForAudienceScope(t *testing.T) {
	clock := ica.NewFakeClock(t0)
	f := newFakeICA(t, clock)
	cred := &fakeCredential{}
	c, err := pipelines.NewClient(pipelines.Config{URL: f.srv.URL, Clock: clock,
		Tokens: &pipelines.AzureTokenSource{Credential: cred, Scope: pipelines.ScopeFor("api://ica")}})
	require.NoError(t, err)
	_, err = c.StartRun(context.Background(), testStart())
	require.NoError(t, err)
	require.Equal(t, [][]string{{"api://ica/.default"}}, cred.scopes)
	require.Equal(t, "Bearer "+testToken, f.calls[0].Auth)
}
