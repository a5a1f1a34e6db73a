package main

import (
	"context"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/entraid"
	"github.com/ica-governance/ica/webhooks"
)

// entraTokens adapts the Entra ID validator to the webhooks' seam.
type entraTokens struct{ v *entraid.Validator }

func (e entraTokens) ValidateToken(ctx context.Context, raw string) (string, error) {
	p, err := e.v.Validate(ctx, raw)
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

// entraValidator returns the JWT validator, or nil when no tenant is configured.
func entraValidator(cfg *Config, clock ica.Clock) (webhooks.TokenValidator, error) {
	if cfg.Entra.TenantID == "" {
		return nil, nil
	}
	v, err := entraid.New(entraid.Config{TenantID: cfg.Entra.TenantID, Audiences: cfg.Entra.Audiences,
		AllowedAppIDs: cfg.Entra.AllowedAppIDs, AllowedObjectIDs: cfg.Entra.AllowedOIDs, AllowedRoles: cfg.Entra.AllowedRoles,
		MetadataURL: cfg.Entra.MetadataURL, Clock: clock})
	if err != nil {
		return nil, err
	}
	return entraTokens{v}, nil
}
