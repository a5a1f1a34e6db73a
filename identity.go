package ica

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// Identities (DESIGN.md "Identities"): grants use stable ids (the
// Mattermost user id, the Entra tid+oid); names and e-mail addresses only
// exclude, and they are compared after a generous normalisation, never as
// raw strings. The run's requester is the main such name: however the
// pipeline spells it ("tech1", " Tech1@Example.com", "tech1+ci@example.com",
// "Tech One <tech1@example.com>"), it must keep tech1 from approving.

// Requester is a person named by a pipeline, normalised for comparison.
type Requester struct {
	// Username is the lower-case name the person is likely to have in
	// Mattermost: the name itself, or the local part of the address
	// (without "+tag").
	Username string
	// Email is the lower-case address without "+tag", or "" when only a
	// name was given.
	Email string
}

var (
	usernamePattern  = regexp.MustCompile(`^[a-z0-9_][a-z0-9._-]*$`)
	localPartPattern = regexp.MustCompile("^[a-z0-9!#$%&'*/=?^_`{|}~.-]+$")
)

// errRequester says what a requester must look like.
var errRequester = errors.New(`must be a user name ("jane.doe"), an e-mail address ("jane.doe@example.com") or "Jane Doe <jane.doe@example.com>"`)

// ParseRequester normalises a requester as a pipeline sends it: surrounding
// space trimmed, lower-cased, "Name <addr>" reduced to addr, a leading "@"
// dropped, "+tag" removed from the local part. It refuses what names nobody
// in particular (a display name such as "Jane Doe", an empty address), since
// a requester that cannot be compared would silently let the requester
// approve.
func ParseRequester(s string) (Requester, error) {
	s = strings.TrimFunc(s, unicode.IsSpace)
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		if !strings.HasSuffix(s, ">") {
			return Requester{}, errRequester
		}
		s = strings.TrimFunc(s[i+1:len(s)-1], unicode.IsSpace)
		if !strings.Contains(s, "@") {
			return Requester{}, errRequester
		}
	}
	s = strings.ToLower(strings.TrimPrefix(s, "@"))
	if s == "" || len(s) > MaxNameLen {
		return Requester{}, errRequester
	}
	local, domain, isEmail := strings.Cut(s, "@")
	if plus := strings.IndexByte(local, '+'); plus >= 0 {
		local = local[:plus]
	}
	if !isEmail {
		if !usernamePattern.MatchString(local) {
			return Requester{}, errRequester
		}
		return Requester{Username: local}, nil
	}
	if !localPartPattern.MatchString(local) {
		return Requester{}, errRequester
	}
	if domain == "" || strings.ContainsAny(domain, "@<>()[],;: \t") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return Requester{}, errRequester
	}
	return Requester{Username: local, Email: local + "@" + domain}, nil
}

// NormalizeUsername is a Mattermost username as the requester check
// compares it: trimmed, lower-case, without a leading "@".
func NormalizeUsername(s string) string {
	return strings.ToLower(strings.TrimPrefix(strings.TrimFunc(s, unicode.IsSpace), "@"))
}

// NormalizeEmail is an address as the requester check compares it
// (lower-case, "+tag" removed), or "" when s is not an address.
func NormalizeEmail(s string) string {
	r, err := ParseRequester(s)
	if err != nil {
		return ""
	}
	return r.Email
}

// Is reports whether the person with this Mattermost username and e-mail
// address (either may be empty) is the requester. It errs towards "yes":
// the username against the requester's name and the local part of the
// requester's address, the address against the address, and the local part
// of the person's address against the requester's name.
func (r Requester) Is(username, email string) bool {
	if r.Username == "" && r.Email == "" {
		return false
	}
	u := NormalizeUsername(username)
	var e, eLocal string
	if p, err := ParseRequester(email); err == nil && p.Email != "" {
		e, eLocal = p.Email, p.Username
	}
	switch {
	case r.Username != "" && u != "" && r.Username == u:
		return true
	case r.Username != "" && eLocal != "" && r.Username == eLocal:
		return true
	case r.Email != "" && e != "" && r.Email == e:
		return true
	}
	return false
}

// IsRequester reports whether a person (Mattermost username and e-mail,
// either may be empty) is any of the named requesters (each as a pipeline
// spelled it; unparseable ones count for nothing).
func IsRequester(username, email string, requesters ...string) bool {
	for _, s := range requesters {
		if r, err := ParseRequester(s); err == nil && r.Is(username, email) {
			return true
		}
	}
	return false
}

// EntraPrefix starts an approver-list entry that names a person by their
// Entra ID identity, for decisions through the API: "entra:<object id>" (a
// user of ICA's tenant) or "entra:<tenant id>/<object id>". Object ids are
// stable; user principal names can be renamed and reassigned, so they are
// never accepted as approvers.
const EntraPrefix = "entra:"

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsEntraApprover reports whether an approver-list entry names an Entra
// identity rather than a Mattermost username.
func IsEntraApprover(entry string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(entry)), EntraPrefix)
}

// ParseEntraApprover reads an "entra:" entry: the tenant id ("" for ICA's
// own tenant) and the object id, lower-case.
func ParseEntraApprover(entry string) (tenant, oid string, err error) {
	rest := strings.TrimSpace(entry)
	if !IsEntraApprover(rest) {
		return "", "", fmt.Errorf("%q is not an entra: entry", entry)
	}
	rest = rest[len(EntraPrefix):]
	if t, o, ok := strings.Cut(rest, "/"); ok {
		tenant, rest = t, o
		if !guidPattern.MatchString(tenant) {
			return "", "", fmt.Errorf("%q: the tenant id must be a GUID", entry)
		}
	}
	if !guidPattern.MatchString(rest) {
		if strings.Contains(rest, "@") {
			return "", "", fmt.Errorf("%q: name Entra approvers by their object id (az ad user show --id %s --query id), not by a user principal name, which can be renamed or given to someone else", entry, rest)
		}
		return "", "", fmt.Errorf("%q: the object id must be a GUID", entry)
	}
	return strings.ToLower(tenant), strings.ToLower(rest), nil
}

// EntraApproverIs reports whether an approver-list entry names the person
// with this tenant and object id; an entry without a tenant names a user of
// homeTenant.
func EntraApproverIs(entry, homeTenant, tenant, oid string) bool {
	t, o, err := ParseEntraApprover(entry)
	if err != nil {
		return false
	}
	if t == "" {
		t = strings.ToLower(homeTenant)
	}
	return t != "" && t == strings.ToLower(tenant) && o == strings.ToLower(oid)
}
