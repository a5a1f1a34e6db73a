package bot_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica/policy"
)

func (h *harness) recordPolicy(prod policy.Rules) {
	h.t.Helper()
	_, _, err := h.store.RecordPolicy(context.Background(), policy.Policy{Targets: map[string]policy.Target{"production": {
		TechnicalApprovers: []string{"tech1", "tech2"}, BusinessApprovers: []string{"biz1"}, Rules: prod}}}, "test", "tester")
	require.NoError(h.t, err)
}

func TestBot_NOfMApprovers(t *testing.T) {
	h := newHarness(t, nil)
	h.recordPolicy(policy.Rules{TechnicalRequired: 2})
	id := h.request("2001", 10)
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	require.Contains(t, h.lastEphemeral("tech1"), "1 of 2 technical: @tech1")
	require.Equal(t, "pending", h.status(id)["status"])
	card := h.card(id)
	require.Equal(t, []string{"approvetechnical", "reject"}, actions(card), "the card keeps its buttons for the others")
	require.Contains(t, cardText(card), "Technical approvals: 1 of 2 technical: @tech1")

	h.click(id, "approvetechnical", "tech1")
	require.Contains(t, h.lastEphemeral("tech1"), "already approved", "the same person counts once")
	require.Equal(t, "pending", h.status(id)["status"])

	h.click(id, "approvetechnical", "tech2")
	require.Equal(t, "technical_approved", h.status(id)["status"])
	require.Contains(t, cardText(h.card(id)), "2 of 2 technical: @tech1, @tech2")
	h.click(id, "approvebusiness", "biz1")
	st := h.status(id)
	require.Equal(t, "approved", st["status"])
	require.Equal(t, true, st["can_deploy"])
	require.Len(t, st["policy_hashes"], 1)
}

func TestBot_DeferredApproval(t *testing.T) {
	h := newHarness(t, nil)
	h.recordPolicy(policy.Rules{TZ: "Europe/Berlin"})
	id := h.request("2002", 10)
	h.settle()
	h.click(id, "approvetechnical", "tech1")
	res := h.click(id, "approvebusinessdeferred", "biz1")
	require.Equal(t, 200, res.Status)
	require.Len(t, h.mm.OpenDialogs("biz1"), 1, "approve later asks when")
	resp, err := h.mm.SubmitOpenDialog("biz1", map[string]any{"not_before": "late"})
	require.NoError(t, err)
	require.Contains(t, resp.Errors, "not_before")
	require.Equal(t, "technical_approved", h.status(id)["status"])

	h.click(id, "approvebusinessdeferred", "biz1")
	resp, err = h.mm.SubmitOpenDialog("biz1", map[string]any{"not_before": "22:00", "comment": "after the campaign"})
	require.NoError(t, err)
	require.Empty(t, resp.Error)
	require.Empty(t, resp.Errors)
	st := h.status(id)
	require.Equal(t, "approved", st["status"])
	require.Equal(t, false, st["can_deploy"])
	require.Equal(t, []any{"not_before"}, st["waiting_for"])
	nb, err := time.Parse(time.RFC3339, st["not_before"].(string))
	require.NoError(t, err)
	require.Equal(t, "22:00", nb.In(mustBerlin(t)).Format("15:04"))
	require.Equal(t, st["not_before"], st["opens_at"])
	h.settle()
	require.Contains(t, cardText(h.card(id)), "Effective: the gate opens no earlier than")
}

func TestBot_SupersededCard(t *testing.T) {
	h := newHarness(t, nil)
	h.recordPolicy(policy.Rules{Exclusive: policy.ExclusiveLatest})
	older := h.request("2003", 10)
	h.clock.Advance(time.Minute)
	newer := h.request("2004", 10)
	h.settle()
	for _, id := range []string{newer, older} {
		h.click(id, "approvetechnical", "tech1")
		h.click(id, "approvebusiness", "biz1")
	}
	st := h.status(older)
	require.Equal(t, "superseded", st["status"])
	require.Equal(t, "2004", st["superseded_by"])
	require.Equal(t, false, st["usable"])
	h.settle()
	card := h.card(older)
	require.Empty(t, actions(card))
	text := cardText(card)
	require.Contains(t, text, "superseded by a newer run")
	require.Contains(t, text, "run 2004 of payments started later")
	require.Contains(t, text, "#8A8A8A")
	require.Equal(t, "approved", h.status(newer)["status"])
}

func mustBerlin(t *testing.T) *time.Location {
	l, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	return l
}
