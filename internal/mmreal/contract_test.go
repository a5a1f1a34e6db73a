package mmreal_test

import (
	"testing"
	"time"

	"github.com/ica-governance/ica/internal/mmcontract"
	"github.com/ica-governance/ica/internal/mmreal"
)

// realPeer is a real Mattermost server under the contract.
type realPeer struct{ s *mmreal.Server }

func (p realPeer) NewWorld(t *testing.T) *mmreal.World { return p.s.NewWorld(t) }

func (realPeer) AddCommand(t *testing.T, w *mmreal.World, trigger, url string) string {
	return w.AddCommand(t, trigger, url).Token
}

func (realPeer) Wait(_ *testing.T, _ *mmreal.World, d time.Duration) { time.Sleep(d) }

// TestContract_RealServer runs the Mattermost contract (the behaviour ICA
// relies on, which bot/mmtest imitates) against the real server.
func TestContract_RealServer(t *testing.T) {
	mmcontract.Run(t, realPeer{mmreal.Connect(t)})
}
