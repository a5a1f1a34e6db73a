package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/archive"
	"github.com/ica-governance/ica/export"
	"github.com/ica-governance/ica/slashcmds"
	"github.com/ica-governance/ica/store"
)

var _ slashcmds.Archiver = (*archive.Archive)(nil)

// ledgerExporter produces signed exports from the store: the range ends at a
// checkpoint of the head signed when the export starts, so writes that
// arrive meanwhile are left out (a consistent snapshot).
type ledgerExporter struct {
	st    *store.Store
	key   ed25519.PrivateKey
	clock ica.Clock
}

func exportRange(q slashcmds.ExportQuery) store.ExportRange {
	return store.ExportRange{From: q.From, To: q.To, Pipeline: q.Pipeline}
}

func (e ledgerExporter) Count(ctx context.Context, q slashcmds.ExportQuery) (int, error) {
	return e.st.CountExport(ctx, exportRange(q))
}

func (e ledgerExporter) Export(ctx context.Context, q slashcmds.ExportQuery, w io.Writer) (*export.Manifest, error) {
	head, err := e.st.Checkpoint()
	if err != nil {
		return nil, err
	}
	filter := ""
	if q.Pipeline != "" {
		filter = "pipeline=" + q.Pipeline
	}
	enc, err := export.NewEncoder(w, export.Options{Format: q.Format, From: q.From, To: q.To, Filter: filter,
		Key: e.key, Head: head, GeneratedAt: e.clock.Now()})
	if err != nil {
		return nil, err
	}
	r := exportRange(q)
	r.Until = head.Seq
	if err := e.st.ExportEntries(ctx, r, enc.Encode); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return enc.Close()
}

// slashQueries answers the /ica views from the store.
type slashQueries struct {
	st     *store.Store
	budget budgetSource
}

func (q slashQueries) PendingApprovals(ctx context.Context, limit int) ([]*ica.Approval, error) {
	all, err := q.st.PendingApprovals(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b *ica.Approval) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return all[:min(limit, len(all))], nil
}

func (q slashQueries) RunningRuns(ctx context.Context, limit int) ([]*ica.Run, error) {
	p, err := q.st.Runs(ctx, ica.RunFilter{Status: ica.RunRunning, Limit: limit})
	if err != nil {
		return nil, err
	}
	return p.Runs, nil
}

// RecentRuns merges the newest runs of each final status, most recently
// finished first.
func (q slashQueries) RecentRuns(ctx context.Context, limit int) ([]*ica.Run, error) {
	var all []*ica.Run
	for _, s := range []string{ica.RunSuccess, ica.RunFailed, ica.RunCancelled} {
		p, err := q.st.Runs(ctx, ica.RunFilter{Status: s, Limit: limit})
		if err != nil {
			return nil, err
		}
		all = append(all, p.Runs...)
	}
	end := func(r *ica.Run) time.Time {
		if r.EndTime != nil {
			return *r.EndTime
		}
		return r.StartTime
	}
	slices.SortFunc(all, func(a, b *ica.Run) int { return end(b).Compare(end(a)) })
	return all[:min(limit, len(all))], nil
}

func (q slashQueries) Run(ctx context.Context, id string) (*ica.Run, error) { return q.st.Run(ctx, id) }

func (q slashQueries) PipelineRuns(ctx context.Context, pipeline string, limit int) ([]*ica.Run, error) {
	p, err := q.st.Runs(ctx, ica.RunFilter{Pipeline: pipeline, Limit: limit})
	if err != nil {
		return nil, err
	}
	return p.Runs, nil
}

func (q slashQueries) LatestApproval(ctx context.Context, runID string) (*ica.Approval, error) {
	a, err := q.st.LatestApproval(ctx, runID)
	if ica.ErrorCode(err) == ica.ENOTFOUND {
		return nil, nil
	}
	return a, err
}

func (q slashQueries) OpenIncidents(ctx context.Context, limit int) ([]*ica.Incident, error) {
	var out []*ica.Incident
	err := q.st.OpenIncidents(func(inc *ica.Incident, _ bool) error {
		out = append(out, inc)
		return nil
	})
	slices.SortFunc(out, func(a, b *ica.Incident) int {
		if c := ica.SeverityRank(a.Severity) - ica.SeverityRank(b.Severity); c != 0 {
			return c
		}
		return b.OpenedAt.Compare(a.OpenedAt)
	})
	return out[:min(limit, len(out))], err
}

func (q slashQueries) Budget(ctx context.Context) (*slashcmds.BudgetSummary, error) {
	b, err := q.budget.Budget(ctx)
	if err != nil {
		return nil, err
	}
	s := &slashcmds.BudgetSummary{Month: ica.MonthStart(q.st.Now()), MonthToDate: b.MonthToDate, Budget: b.MonthlyBudget,
		Threshold: b.Threshold, Forecast: b.Forecast, GateMonthToDate: b.GateMonthToDate, Azure: b.Azure}
	if b.AsOf != nil {
		s.AsOf = *b.AsOf
	}
	return s, nil
}
