package slashcmds

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/bot"
)

// fixtureVerifier checks the captured commands' trigger_ids against the
// captured server's key, on a clock at the capture's time, and names the
// captured user.
type fixtureVerifier struct {
	v    *bot.TriggerVerifier
	used *memUsed
}

func (f *fixtureVerifier) forget() {
	f.used.mu.Lock()
	defer f.used.mu.Unlock()
	clear(f.used.used)
}

func (f *fixtureVerifier) VerifyCaller(ctx context.Context, triggerID, userID string) (Caller, error) {
	if _, err := f.v.Verify(ctx, triggerID, userID); err != nil {
		return Caller{}, ica.Errorf(ica.EFORBIDDEN, "ICA could not confirm that this came from you through Mattermost, so nothing was changed")
	}
	return Caller{UserID: userID, Username: "tech1", Email: "tech1@example.com"}, nil
}

func fixtureCallers(t *testing.T, body string) *fixtureVerifier {
	t.Helper()
	key, err := os.ReadFile(filepath.Join("testdata", "asymmetric-signing-public-key.txt"))
	require.NoError(t, err)
	form, err := url.ParseQuery(body)
	require.NoError(t, err)
	tr, err := bot.ParseTrigger(form.Get("trigger_id"))
	require.NoError(t, err)
	used := &memUsed{used: map[string]bool{}}
	v, err := bot.NewTriggerVerifier(string(key), nil, used, ica.NewFakeClock(tr.At.Add(time.Second)))
	require.NoError(t, err)
	return &fixtureVerifier{v: v, used: used}
}

// slashForm posts a form (as someone who bypasses Mattermost but holds the
// command token) and returns the reply text.
func (w *world) slashForm(form url.Values) string {
	w.t.Helper()
	form.Set("token", w.token)
	res, err := http.Post(w.srv.URL+"/mattermost/slash", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	require.NoError(w.t, err)
	defer res.Body.Close()
	require.Equal(w.t, http.StatusOK, res.StatusCode)
	resp, err := model.CommandResponseFromHTTPBody(res.Header.Get("Content-Type"), res.Body)
	require.NoError(w.t, err)
	return resp.Text
}

// TestSlash_TriggerRefusals: the command token proves only that a request
// came through a Mattermost command; who ran it is proven by the
// trigger_id. Without a valid, fresh, unused trigger for the user_id, a
// command runs nothing.
func TestSlash_TriggerRefusals(t *testing.T) {
	w := newWorld(t)
	reply := w.slash("tech1", "deployments", "/ica status")
	require.Contains(t, reply, "#### ICA status")
	calls := w.q.Calls()
	captured := url.Values(w.mm.SlashCalls()[0].Form)

	refused := func(name string, change func(f url.Values)) {
		t.Run(name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range captured {
				f[k] = append([]string(nil), v...)
			}
			change(f)
			require.Contains(t, w.slashForm(f), "could not confirm", name)
			require.Equal(t, calls, w.q.Calls(), "nothing ran")
		})
	}
	refused("replayed", func(url.Values) {})
	refused("no trigger", func(f url.Values) { f.Del("trigger_id") })
	refused("garbage trigger", func(f url.Values) { f.Set("trigger_id", "bm90IGEgdHJpZ2dlcg==") })
	refused("another user's trigger", func(f url.Values) { f.Set("trigger_id", w.mm.TriggerID("biz1")) })
	refused("stale trigger", func(f url.Values) {
		f.Set("trigger_id", w.mm.TriggerID("tech1"))
		w.clock.Advance(31 * time.Second)
	})
}

// TestSlash_NameFromMattermostNotBody: the user name of a command is the
// one Mattermost gives for the verified user id, whatever the body says;
// export permissions and the ledger use it.
func TestSlash_NameFromMattermostNotBody(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.ExportUsers = []string{"tech1"} })
	f := url.Values{}
	f.Set("channel_id", w.mm.ChannelID("deployments"))
	f.Set("channel_name", "deployments")
	f.Set("user_id", w.mm.UserID("biz1"))
	f.Set("user_name", "tech1") // forged
	f.Set("trigger_id", w.mm.TriggerID("biz1"))
	f.Set("text", "export")
	require.Contains(t, w.slashForm(f), "not allowed to export")
	require.Zero(t, w.ex.Counts())

	reply := w.slash("tech1", "deployments", "/ica export")
	require.Contains(t, reply, "Exporting")
	w.wait()
	require.Equal(t, "tech1", w.ex.Exports()[0].RequestedBy)
}

func TestSlash_NoVerifierRefusesAll(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.Callers = nil })
	require.Contains(t, w.slash("tech1", "deployments", "/ica status"), "cannot check who runs")
	require.Zero(t, w.q.Calls())
}

func TestSlash_InstanceName(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.InstanceName = "production" })
	require.Contains(t, w.slash("tech1", "deployments", "/ica status"), "#### ICA status · `production`")
}
