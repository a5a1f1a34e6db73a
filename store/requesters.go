package store

import (
	"context"

	"github.com/ica-governance/ica"
)

// RunRequester returns who Azure DevOps says a run is for (empty when the
// pipeline sent neither requested_for_email nor requested_for_id); it is
// part of the run, recorded by its start.
func (s *Store) RunRequester(ctx context.Context, runID string) (ica.RunRequester, error) {
	r, err := s.Run(ctx, runID)
	if err != nil {
		return ica.RunRequester{}, err
	}
	return r.Requester(), nil
}
