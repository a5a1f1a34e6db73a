package main

import (
	"context"
	"log/slog"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/entraid"
	"github.com/ica-governance/ica/webhooks"
)

// appTokens adapts one application surface (pipelines, alerts) to the
// webhooks' seam.
type appTokens struct{ s *entraid.Surface }

func (e appTokens) ValidateToken(ctx context.Context, raw string) (string, error) {
	p, err := e.s.Validate(ctx, raw)
	if err != nil {
		return "", err
	}
	// The actor in the ledger: the calling application (managed identity).
	switch {
	case p.AppID != "":
		return "entra:" + p.AppID, nil
	case p.ObjectID != "":
		return "entra:" + p.ObjectID, nil
	}
	return "entra:" + p.Subject, nil
}

// personTokens adapts the user surface to the webhooks' seam.
type personTokens struct{ s *entraid.Surface }

func (e personTokens) ValidatePerson(ctx context.Context, raw string) (*webhooks.Person, error) {
	p, err := e.s.Validate(ctx, raw)
	if err != nil {
		return nil, err
	}
	return &webhooks.Person{TenantID: p.TenantID, ObjectID: p.ObjectID, UPN: p.UPN, Name: p.Name}, nil
}

// entraSurfaces are the Entra ID validators of ICA's three surfaces; each
// is nil when no tenant is configured (JWTs are then refused everywhere).
type entraSurfaces struct {
	Pipeline webhooks.TokenValidator  // POST /api/v1/runs and the rest of the pipeline API
	Alert    webhooks.TokenValidator  // the Azure Monitor intake (Secure Webhook)
	User     webhooks.PersonValidator // people's delegated tokens (GET /api/v1/me, decisions)
}

// entraWiring builds one validator (one key set) and a surface per policy.
func entraWiring(cfg *Config, clock ica.Clock, log *slog.Logger) (*entraSurfaces, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := &entraSurfaces{}
	e := &cfg.Entra
	if e.TenantID == "" {
		return out, nil
	}
	v, err := entraid.New(entraid.Config{TenantID: e.TenantID, Audiences: e.audiences(), MetadataURL: e.MetadataURL, Clock: clock})
	if err != nil {
		return nil, err
	}
	or := func(list, def []string) []string {
		if len(list) > 0 {
			return list
		}
		return def
	}
	surface := func(p entraid.Policy, own []string) (*entraid.Surface, error) {
		p.Audiences = or(own, e.Audiences)
		if len(p.Audiences) == 0 {
			return nil, nil // this surface has no audience: it takes no Entra token
		}
		return v.Surface(p)
	}
	pipe, err := surface(entraid.Policy{Name: "the pipeline API", Caller: entraid.CallerApp,
		AppIDs: e.Pipeline.AppIDs, ObjectIDs: e.Pipeline.ObjectIDs, Roles: e.Pipeline.Roles}, e.Pipeline.Audiences)
	if err != nil {
		return nil, err
	}
	alert, err := surface(entraid.Policy{Name: "the alert intake", Caller: entraid.CallerApp,
		AppIDs: e.Alert.AppIDs, RequireRoles: e.Alert.Roles}, e.Alert.Audiences)
	if err != nil {
		return nil, err
	}
	user, err := surface(entraid.Policy{Name: "the user API", Caller: entraid.CallerUser, Scopes: e.User.Scopes}, e.User.Audiences)
	if err != nil {
		return nil, err
	}
	if pipe == nil || !pipe.Admits() {
		// The surface still answers, refusing every token with the reason.
		log.Warn("Entra ID: the pipeline API accepts no Entra token until ICA_ENTRA_PIPELINE_APP_IDS, _OBJECT_IDS or _ROLES names the pipelines' identities")
	}
	if pipe != nil {
		out.Pipeline = appTokens{pipe}
	}
	if alert != nil {
		out.Alert = appTokens{alert}
	}
	if user != nil {
		out.User = personTokens{user}
	}
	return out, nil
}
