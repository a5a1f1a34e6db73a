package slashcmds

import (
	"context"
	"fmt"
)

// DashboardLinks issues single-use links to the dashboard (the dashboard
// package's Handler).
type DashboardLinks interface {
	// Issue returns a link that signs userID in to the dashboard once,
	// within a few minutes.
	Issue(ctx context.Context, userID, username string) (url string, err error)
}

// dashboard answers "/ica dashboard" with a single-use link, ephemeral so
// only the caller sees it.
func (h *Handler) dashboard(ctx context.Context, c *call) (string, error) {
	if err := noArgs(c); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	url, err := h.d.Dashboard.Issue(ctx, c.UserID, c.UserName)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("[Open the ICA dashboard](%s) — budget, approval times, runs, incidents and the ledger.\n\n"+
		"This link is only for you: it works once, within 5 minutes, and signs you in for 8 hours. "+
		"Type `/ica dashboard` again for a new one.", url), nil
}
