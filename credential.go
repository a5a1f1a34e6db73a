package ica

import "context"

type credentialKey struct{}

// WithCredential returns ctx carrying the credential a request was
// authenticated with ("token:<name>", "entra-oid:<object id>"). The store
// binds a new run to it: only that credential may add events to the run,
// finish it, request, use or void its approvals.
func WithCredential(ctx context.Context, cred string) context.Context {
	return context.WithValue(ctx, credentialKey{}, cred)
}

// CredentialOf returns the credential ctx carries ("" when none).
func CredentialOf(ctx context.Context) string {
	c, _ := ctx.Value(credentialKey{}).(string)
	return c
}
