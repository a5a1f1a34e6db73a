package webhooks

import (
	"context"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// Least privilege for pipeline credentials.
//
//   - A run is bound to the credential that started it: only that
//     credential may add events to it, finish it, request, use or void its
//     approvals (403 otherwise).
//   - A token may be limited to named pipelines: it starts, lists and reads
//     only their runs and approvals.
//   - A REST-check token (role "check") may request and read approvals of
//     its named pipelines, and use them (the check is the pipeline's gate),
//     but not start, finish or add events to runs.
//   - Entra ID callers (managed identities) are bound by their object id.

// Roles of a pipeline credential.
const (
	RolePipeline = "pipeline"
	RoleCheck    = "check"
)

// Scope limits a credential.
type Scope struct {
	// Role is RolePipeline (the default) or RoleCheck.
	Role string
	// Pipelines the credential may touch; empty: any (RolePipeline only).
	Pipelines []string
}

// allows reports whether the scope covers a pipeline.
func (s Scope) allows(pipeline string) bool {
	return len(s.Pipelines) == 0 || slices.Contains(s.Pipelines, pipeline)
}

// WithScopes limits the named tokens (see Scope); tokens not named keep
// the pipeline role on every pipeline. It returns t.
func (t *StaticTokens) WithScopes(scopes map[string]Scope) *StaticTokens {
	t.scopes = scopes
	return t
}

func (t *StaticTokens) principal(name string) *Principal {
	p := &Principal{Name: name, Kind: "token", Credential: "token:" + name, Scope: t.scopes[name]}
	if p.Scope.Role == "" {
		p.Scope.Role = RolePipeline
	}
	return p
}

// ObjectIDValidator is a TokenValidator that also says which object (the
// managed identity's object id) a token stands for, so runs are bound to
// the identity, not to a display name.
type ObjectIDValidator interface {
	ValidateTokenObject(ctx context.Context, raw string) (actor, objectID string, err error)
}

func jwtPrincipal(ctx context.Context, v TokenValidator, tok string) (*Principal, error) {
	if ov, ok := v.(ObjectIDValidator); ok {
		actor, oid, err := ov.ValidateTokenObject(ctx, tok)
		if err != nil {
			return nil, err
		}
		cred := "jwt:" + actor
		if oid != "" {
			cred = "entra-oid:" + strings.ToLower(oid)
		}
		return &Principal{Name: actor, Kind: "jwt", Credential: cred, Scope: Scope{Role: RolePipeline}}, nil
	}
	actor, err := v.ValidateToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	return &Principal{Name: actor, Kind: "jwt", Credential: "jwt:" + actor, Scope: Scope{Role: RolePipeline}}, nil
}

// caller is the principal of a request; requests without one (tests, other
// entry points) are unrestricted.
func caller(r context.Context) *Principal { return PrincipalOf(r) }

// mayStart checks that the caller may start a run of pipeline.
func mayStart(ctx context.Context, pipeline string) error {
	p := caller(ctx)
	if p == nil {
		return nil
	}
	if p.Scope.Role == RoleCheck {
		return ica.Errorf(ica.EFORBIDDEN, "%s is a REST-check token: it may request and read approvals, not start runs", p.Name)
	}
	if !p.Scope.allows(pipeline) {
		return ica.FieldErrorf(ica.EFORBIDDEN, "pipeline_name", "%s may start runs only of %s, not of %q", p.Name, strings.Join(p.Scope.Pipelines, ", "), pipeline)
	}
	return nil
}

// ScopedPipeline is the pipeline a listing may show the caller: what it
// asked for ("": every pipeline), within its token's pipelines. A token
// limited to one pipeline lists that one by default; to several, it must
// name one.
func ScopedPipeline(ctx context.Context, requested string) (string, error) {
	p := caller(ctx)
	if p == nil || len(p.Scope.Pipelines) == 0 {
		return requested, nil
	}
	switch {
	case requested == "" && len(p.Scope.Pipelines) == 1:
		return p.Scope.Pipelines[0], nil
	case requested == "":
		return "", ica.FieldErrorf(ica.EINVALID, "pipeline", "%s may list only pipelines %s: name one with ?pipeline=", p.Name, strings.Join(p.Scope.Pipelines, ", "))
	}
	return requested, mayRead(ctx, requested)
}

// RequireUnscoped checks that the caller may read what covers every
// pipeline (a proof shows one whole entry of any pipeline; the dashboard's
// figures span them all): tokens limited to pipelines, and REST-check
// tokens, may not.
func RequireUnscoped(ctx context.Context, what string) error {
	p := caller(ctx)
	if p == nil || (len(p.Scope.Pipelines) == 0 && p.Scope.Role != RoleCheck) {
		return nil
	}
	return ica.Errorf(ica.EFORBIDDEN, "%s is limited to pipelines %s; %s covers every pipeline and needs a pipeline token without limits or an admin token",
		p.Name, strings.Join(p.Scope.Pipelines, ", "), what)
}

// mayRead checks that the caller may read runs and approvals of pipeline.
func mayRead(ctx context.Context, pipeline string) error {
	p := caller(ctx)
	if p == nil || p.Scope.allows(pipeline) {
		return nil
	}
	return ica.Errorf(ica.EFORBIDDEN, "%s may read only pipelines %s; this belongs to %q", p.Name, strings.Join(p.Scope.Pipelines, ", "), pipeline)
}

// owns reports whether the caller is the credential the run is bound to.
func owns(p *Principal, r *ica.Run) bool {
	if r.Credential != "" {
		return r.Credential == p.Credential
	}
	return r.Actor == p.Name // runs started before credentials were recorded
}

// mayWriteRun checks that the caller may add events to or finish a run:
// only the credential that started it.
func mayWriteRun(ctx context.Context, r *ica.Run, what string) error {
	p := caller(ctx)
	if p == nil {
		return nil
	}
	if p.Scope.Role == RoleCheck {
		return ica.Errorf(ica.EFORBIDDEN, "%s is a REST-check token: it cannot %s runs", p.Name, what)
	}
	if !owns(p, r) {
		return ica.Errorf(ica.EFORBIDDEN, "run %s belongs to the credential that started it (%s); %s cannot %s it", r.RunID, r.Actor, p.Name, what)
	}
	return nil
}

// mayGate checks that the caller may request or use approvals of a run:
// its own credential, or a REST-check token for its pipeline.
func mayGate(ctx context.Context, r *ica.Run, what string) error {
	p := caller(ctx)
	if p == nil {
		return nil
	}
	if p.Scope.Role == RoleCheck {
		if len(p.Scope.Pipelines) > 0 && p.Scope.allows(r.PipelineName) {
			return nil
		}
		return ica.Errorf(ica.EFORBIDDEN, "REST-check token %s may %s approvals only of %s, not of %q", p.Name, what, strings.Join(p.Scope.Pipelines, ", "), r.PipelineName)
	}
	if !owns(p, r) {
		return ica.Errorf(ica.EFORBIDDEN, "run %s belongs to the credential that started it (%s); %s cannot %s its approvals", r.RunID, r.Actor, p.Name, what)
	}
	return nil
}

// withCredential passes the caller's credential to the store (runs are
// bound to it).
func withCredential(ctx context.Context) context.Context {
	if p := caller(ctx); p != nil && p.Credential != "" {
		return ica.WithCredential(ctx, p.Credential)
	}
	return ctx
}
