package webhooks_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/internal/testclock"
	"github.com/ica-governance/ica/store"
	"github.com/ica-governance/ica/store/storetest"
	"github.com/ica-governance/ica/webhooks"
)

// An auditor with a pipeline token asks for the proof of an approval's
// decision (its decision_seq) and checks it offline with the public key.
func TestHandler_LedgerProof(t *testing.T) {
	clock := ica.NewFakeClock(testclock.At(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	st, err := storetest.New(t).Open(store.Options{Clock: clock, Key: key})
	require.NoError(t, err)
	defer st.Close()
	pt, err := webhooks.NewStaticTokens(map[string]string{"ado": webhooks.HashToken(pipelineToken)}, nil)
	require.NoError(t, err)
	h := webhooks.NewHandler(webhooks.Deps{Ledger: st, Pipelines: pt, Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h.RegisterProofs(st, pt, time.Minute)
	srv := httptest.NewServer(h)
	defer srv.Close()
	e := &env{t: t, srv: srv, store: st, clock: clock}

	r := e.do("POST", "/api/v1/runs", pipelineToken, map[string]any{"pipeline_name": "payments", "run_id": "run-1",
		"branch": "main", "commit": commitA, "triggered_by": "alice"})
	require.Equal(t, 201, r.status, r.raw)
	r = e.do("POST", "/api/v1/approvals", pipelineToken, map[string]any{"run_id": "run-1", "deployment_target": "production", "estimated_cost": 1})
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["approval_id"].(string)
	r = e.do("GET", "/api/v1/approvals/"+id, pipelineToken, nil)
	require.Equal(t, 200, r.status)
	seq := uint64(r.body["decision_seq"].(float64))
	require.NotZero(t, seq)
	require.Len(t, r.body["decision_hash"], 64)

	path := "/api/v1/ledger/proof?seq=" + jsonNum(seq)
	r = e.do("GET", path, pipelineToken, nil)
	require.Equal(t, 503, r.status, "not covered by a checkpoint yet")
	require.Equal(t, "60", r.header.Get("Retry-After"))
	_, err = st.Checkpoint()
	require.NoError(t, err)
	r = e.do("GET", path, pipelineToken, nil)
	require.Equal(t, 200, r.status, r.raw)
	b, err := ica.ParseProofBundle([]byte(r.raw))
	require.NoError(t, err)
	res, err := b.Verify(key.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	require.Equal(t, seq, res.Seq)
	require.Equal(t, id, res.Subject)
	require.Equal(t, r.body["entry"].(map[string]any)["hash"], b.Entry.Hash)

	require.Equal(t, 401, e.do("GET", path, "", nil).status)
	require.Equal(t, 400, e.do("GET", "/api/v1/ledger/proof?seq=x", pipelineToken, nil).status)
	require.Equal(t, 404, e.do("GET", "/api/v1/ledger/proof?seq=999", pipelineToken, nil).status)
}

func jsonNum(v uint64) string { b, _ := json.Marshal(v); return string(b) }
