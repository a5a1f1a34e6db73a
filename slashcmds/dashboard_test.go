package slashcmds

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

type fakeLinks struct {
	mu    sync.Mutex
	users []string
	err   error
}

func (f *fakeLinks) Issue(_ context.Context, userID, username string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", f.err
	}
	f.users = append(f.users, userID+"/"+username)
	return "https://ica.example.com/dashboard/link/tok-" + username, nil
}

func TestSlash_Dashboard(t *testing.T) {
	links := &fakeLinks{}
	w := newWorld(t, func(d *Deps) { d.Dashboard = links })
	reply := w.slash("tech1", "deployments", "/ica dashboard")
	require.Contains(t, reply, "](https://ica.example.com/dashboard/link/tok-tech1)")
	require.Contains(t, reply, "works once, within 5 minutes")
	require.Len(t, links.users, 1)
	require.True(t, strings.HasSuffix(links.users[0], "/tech1"), "the link is for the caller: %s", links.users[0])
	require.NotEqual(t, "/tech1", links.users[0], "with the Mattermost user id")

	require.Contains(t, w.slash("tech1", "deployments", "/ica dashboard now"), "takes no arguments")
	require.Contains(t, w.slash("tech1", "deployments", "/ica help"), "/ica dashboard")
	require.Equal(t, "[status|approvals|incidents|budget|export|dashboard|help]", w.h.AutocompleteData().Hint)

	links.err = ica.Errorf(ica.EUNAVAILABLE, "the dashboard needs ICA_PUBLIC_URL")
	require.Contains(t, w.slash("tech1", "deployments", "/ica dashboard"), "needs ICA_PUBLIC_URL")
}

func TestSlash_NoDashboard(t *testing.T) {
	w := newWorld(t)
	require.Contains(t, w.slash("tech1", "deployments", "/ica dashboard"), "it is not an /ica command")
}
