package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// TokenSource supplies the bearer token for each request. Implementations
// cache as they see fit; the client asks before every attempt so a token that
// expires during a long approval wait is renewed.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a fixed bearer token (ICA_TOKEN, one of the server's
// ICA_PIPELINE_TOKENS).
type StaticToken string

// Token returns the token itself.
func (t StaticToken) Token(context.Context) (string, error) {
	if t == "" {
		return "", errors.New("empty token")
	}
	return string(t), nil
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// AzureTokenSource gets Entra ID access tokens from an azcore credential
// (Managed Identity, workload identity, Azure CLI …) for one scope. The
// azidentity credentials cache tokens and refresh them before they expire,
// so asking for every request is cheap.
type AzureTokenSource struct {
	Credential azcore.TokenCredential
	Scope      string
}

// Token returns a current access token for the scope.
func (s *AzureTokenSource) Token(ctx context.Context) (string, error) {
	tok, err := s.Credential.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s.Scope}})
	if err != nil {
		return "", fmt.Errorf("get Entra ID token for %s: %w", s.Scope, err)
	}
	return tok.Token, nil
}

// ScopeFor turns an application ID URI or client id into the scope to ask
// for: "<audience>/.default" (unchanged when it already ends so).
func ScopeFor(audience string) string {
	audience = strings.TrimSpace(audience)
	if strings.HasSuffix(audience, "/.default") {
		return audience
	}
	return strings.TrimRight(audience, "/") + "/.default"
}

// NewAzureTokenSource returns a TokenSource backed by
// azidentity.DefaultAzureCredential for the audience ICA validates
// (ICA_AUDIENCE). DefaultAzureCredential tries, in order, environment
// credentials, workload identity, Managed Identity (AZURE_CLIENT_ID selects a
// user-assigned identity) and developer logins such as `az login`;
// AZURE_TOKEN_CREDENTIALS narrows the chain (for example to
// "ManagedIdentityCredential").
func NewAzureTokenSource(audience string) (*AzureTokenSource, error) {
	if strings.TrimSpace(audience) == "" {
		return nil, errors.New("no audience for Entra ID tokens")
	}
	cred, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("set up Azure credential: %w", err)
	}
	return &AzureTokenSource{Credential: cred, Scope: ScopeFor(audience)}, nil
}
