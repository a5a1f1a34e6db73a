package entraid

import (
	"context"
	"slices"
	"strings"

	"github.com/ica-governance/ica"
)

// Kinds of caller a Policy admits.
const (
	// CallerApp is an application or managed identity (client credentials):
	// a token without delegated scopes. Pipelines and Azure Monitor.
	CallerApp = "app"
	// CallerUser is a person's delegated token (scp present), obtained for
	// ICA's own audience, e.g. with az account get-access-token --resource.
	CallerUser = "user"
)

// Azure Monitor action groups' Secure Webhook: the application that
// requests the tokens ("AzNS AAD Webhook") and the app role Microsoft's
// set-up script assigns it on the protected API.
const (
	ActionGroupsAppID = "461e8683-5575-4561-ac7f-899cc907d62a"
	ActionGroupsRole  = "ActionGroupsSecureWebhook"
)

// Policy is one surface's rule on who may call it. Every list is compared
// case-insensitively except roles and scopes, which Entra ID spells exactly.
type Policy struct {
	// Name names the surface in refusals ("pipeline API", "alert intake").
	Name string
	// Audiences narrows the Validator's audiences for this surface; empty
	// keeps them all.
	Audiences []string
	// Caller is CallerApp or CallerUser; a token of the other kind is
	// refused (403).
	Caller string

	// AppIDs, ObjectIDs and Roles say which application callers are
	// accepted: the caller must match at least one non-empty list (its
	// application id, its object id, or one of its app roles). With all
	// three empty, every application token is refused: an unconfigured
	// policy never admits the whole tenant. Ignored for CallerUser.
	AppIDs    []string
	ObjectIDs []string
	Roles     []string
	// RequireRoles, when set, must also be matched: the token carries at
	// least one of them (the alert intake requires the Secure Webhook role
	// besides the action groups' application id).
	RequireRoles []string

	// Scopes, for CallerUser: the token must carry at least one of these
	// delegated scopes; empty accepts any scope (a person's token for
	// ICA's audience always has one).
	Scopes []string
}

// Surface validates tokens for one surface of ICA: the shared Validator's
// checks (signature, issuer, tenant, lifetime), the surface's audiences and
// its Policy. It is safe for concurrent use.
type Surface struct {
	v         *Validator
	name      string
	caller    string
	audiences map[string]bool
	appIDs    map[string]bool
	objectIDs map[string]bool
	roles     map[string]bool
	require   map[string]bool
	scopes    map[string]bool
}

// Surface returns the validator of one surface. Its audiences must be among
// the Validator's (they are the cheap check made before any key is fetched).
func (v *Validator) Surface(p Policy) (*Surface, error) {
	s := &Surface{v: v, name: p.Name, caller: p.Caller, audiences: v.audiences,
		appIDs: lowerSet(p.AppIDs), objectIDs: lowerSet(p.ObjectIDs),
		roles: exactSet(p.Roles), require: exactSet(p.RequireRoles), scopes: exactSet(p.Scopes)}
	if s.name == "" {
		s.name = "this endpoint"
	}
	switch p.Caller {
	case CallerApp, CallerUser:
	default:
		return nil, ica.FieldErrorf(ica.EINVALID, "Caller", "entraid: policy of %s: caller must be %q or %q", s.name, CallerApp, CallerUser)
	}
	if len(p.Audiences) > 0 {
		s.audiences = map[string]bool{}
		for _, a := range p.Audiences {
			if !v.audiences[a] {
				return nil, ica.FieldErrorf(ica.EINVALID, "Audiences", "entraid: policy of %s: audience %q is not one of the validator's", s.name, a)
			}
			s.audiences[a] = true
		}
	}
	return s, nil
}

func exactSet(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

// Name returns the surface's name.
func (s *Surface) Name() string { return s.name }

// Admits reports whether the policy can accept any token at all: an
// application surface with no caller configured refuses everything.
func (s *Surface) Admits() bool {
	return s.caller == CallerUser || len(s.appIDs)+len(s.objectIDs)+len(s.roles) > 0
}

// Validate verifies raw and applies the surface's policy. Besides the
// Validator's errors, a valid token of the wrong kind or from a caller the
// policy does not name is EFORBIDDEN. No error message contains the token.
func (s *Surface) Validate(ctx context.Context, raw string) (*Principal, error) {
	if !s.Admits() {
		// Refuse before any work: nothing could be accepted.
		return nil, ica.Errorf(ica.EFORBIDDEN, "%s accepts no Entra ID token: no application, object id or role is configured for it", s.name)
	}
	p, err := s.v.verify(ctx, raw, s.audiences)
	if err != nil {
		return nil, err
	}
	if err := s.check(p); err != nil {
		return nil, err
	}
	return p, nil
}

func (s *Surface) check(p *Principal) error {
	if s.caller == CallerUser {
		if !p.IsUser() || len(p.Scopes) == 0 {
			return ica.Errorf(ica.EFORBIDDEN, "%s accepts a person's delegated token (with scp), not an application token", s.name)
		}
		if p.ObjectID == "" {
			return ica.Errorf(ica.EFORBIDDEN, "the token names no person (oid)")
		}
		if len(s.scopes) > 0 && !anyIn(p.Scopes, s.scopes) {
			return ica.Errorf(ica.EFORBIDDEN, "%s needs one of the scopes %s", s.name, strings.Join(keys(s.scopes), ", "))
		}
		return nil
	}
	if p.IsUser() {
		return ica.Errorf(ica.EFORBIDDEN, "%s accepts application and managed identity tokens, not a person's delegated token (scp)", s.name)
	}
	matched := (p.AppID != "" && s.appIDs[strings.ToLower(p.AppID)]) ||
		(p.ObjectID != "" && s.objectIDs[strings.ToLower(p.ObjectID)]) ||
		anyIn(p.Roles, s.roles)
	if !matched {
		var what []string
		if len(s.appIDs) > 0 {
			what = append(what, "application")
		}
		if len(s.objectIDs) > 0 {
			what = append(what, "object id")
		}
		if len(s.roles) > 0 {
			what = append(what, "role")
		}
		return ica.Errorf(ica.EFORBIDDEN, "caller not allowed on %s (no allowed %s)", s.name, strings.Join(what, " or "))
	}
	if len(s.require) > 0 && !anyIn(p.Roles, s.require) {
		return ica.Errorf(ica.EFORBIDDEN, "caller not allowed on %s: the token lacks the role %s", s.name, strings.Join(keys(s.require), " or "))
	}
	return nil
}

func anyIn(have []string, want map[string]bool) bool {
	for _, h := range have {
		if want[h] {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out) // stable messages
	return out
}
