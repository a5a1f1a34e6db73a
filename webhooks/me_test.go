package webhooks_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/webhooks"
)

type personStub struct{}

func (personStub) ValidatePerson(ctx context.Context, raw string) (*webhooks.Person, error) {
	if raw == "person.jwt.token" {
		return &webhooks.Person{TenantID: "t", ObjectID: "o", UPN: "abe@example.com", Name: "Abe"}, nil
	}
	return nil, ica.Errorf(ica.EFORBIDDEN, "the user API accepts a person's delegated token (with scp), not an application token")
}

func TestAPI_Me(t *testing.T) {
	e := newEnv(t, 0)
	// Without Entra ID the user surface is not configured: 503 not_configured, no Retry-After.
	r := e.do("GET", "/api/v1/me", "person.jwt.token", nil)
	require.Equal(t, 503, r.status, r.raw)
	require.Equal(t, ica.ENOTCONFIGURED, r.body["error"].(map[string]any)["code"])
	require.Contains(t, r.errMessage(), "ICA_ENTRA_TENANT_ID")
	require.Empty(t, r.header.Get("Retry-After"), "clients do not retry not_configured")

	h := webhooks.NewHandler(webhooks.Deps{Ledger: e.store, Users: webhooks.NewUserAuth(personStub{}), Clock: e.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(auth string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/me", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	st, body := get("Bearer person.jwt.token")
	require.Equal(t, 200, st, body)
	require.JSONEq(t, `{"id":"entra:t/o","tid":"t","oid":"o","upn":"abe@example.com","name":"Abe"}`, body)
	st, body = get("Bearer app.jwt.token")
	require.Equal(t, 403, st, body)
	st, body = get("Bearer " + pipelineToken)
	require.Equal(t, 401, st, "a static token is no person: %s", body)
	st, _ = get("")
	require.Equal(t, 401, st)
}
