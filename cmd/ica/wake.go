package main

import (
	"context"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/store"
)

// deadlineLedger is the store as the HTTP API uses it. After every approval
// it creates it wakes the scheduler: the new deadline (or its reminder) may
// be the next thing due, and when no message was queued (Mattermost not
// configured) nothing else would tell the scheduler, which would then sleep
// until its longest nap ends and expire the approval late.
type deadlineLedger struct {
	*store.Store
	wake func()
}

// RequestApproval creates an approval and wakes the scheduler.
func (l deadlineLedger) RequestApproval(ctx context.Context, in *ica.ApprovalRequest, actor string) (*ica.Approval, bool, error) {
	a, created, err := l.Store.RequestApproval(ctx, in, actor)
	if err == nil && created {
		l.wake()
	}
	return a, created, err
}

// RequestApprovalWithCheck creates (or links) an approval for an Azure
// Pipelines check and wakes the scheduler.
func (l deadlineLedger) RequestApprovalWithCheck(ctx context.Context, in *ica.ApprovalRequest, cb *ica.CheckCallback, actor string) (*ica.Approval, bool, error) {
	a, created, err := l.Store.RequestApprovalWithCheck(ctx, in, cb, actor)
	if err == nil && created {
		l.wake()
	}
	return a, created, err
}
