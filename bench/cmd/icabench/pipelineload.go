package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ica-governance/ica/bench"
)

// pipelineLoadConfig is what pipelineLoad sends: clients pipelines, each
// running runs of start + events + finish back to back.
type pipelineLoadConfig struct {
	clients, events int
	eventIDs        bool
	// spreadPrefix, when set, names runs <prefix><client>-<n> (far apart in
	// key order) instead of one increasing build id for all clients.
	spreadPrefix string
	// target gives the base URL and bearer of a client's server.
	target func(client int) (base, auth string)
}

// pipelineLoadResult is what pipelineLoad measured inside the window.
type pipelineLoadResult struct {
	total, events, runs, errors int64
	firstErr                    string
	lat, latEvents              []time.Duration // sorted
}

// pipelineLoad runs the ingest scenario's pipelines until the window
// closes: every request is counted when it was both sent and answered
// inside the window; a failure ends its run.
func pipelineLoad(ctx context.Context, client *http.Client, w bench.Window, c pipelineLoadConfig) pipelineLoadResult {
	var all, evl bench.Latencies
	var total, events, runs, errs, buildID atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for id := range c.clients {
		base, auth := c.target(id)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sa, se := all.Shard(), evl.Shard()
			defer sa.Done()
			defer se.Done()
			// post sends one request and records it; false ends the run.
			post := func(path string, body []byte, want int, isEvent bool) bool {
				begin := time.Now()
				if !w.Open(begin) || ctx.Err() != nil {
					return false
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
				req.Header.Set("Authorization", auth)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					if resp.StatusCode != want {
						b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
						err = fmt.Errorf("POST %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				end := time.Now()
				if err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					return false
				}
				if w.Contains(begin, end) {
					d := end.Sub(begin)
					total.Add(1)
					sa.Add(d)
					if isEvent {
						events.Add(1)
						se.Add(d)
					}
				}
				return true
			}
			for n := 0; w.Open(time.Now()) && ctx.Err() == nil; n++ {
				runID := strconv.FormatInt(1_000_000+buildID.Add(1), 10)
				if c.spreadPrefix != "" {
					runID = fmt.Sprintf("%s%d-%d", c.spreadPrefix, id, n)
				}
				if !post("/api/v1/runs", startBody(runID, id, n), http.StatusCreated, false) {
					continue
				}
				ok := true
				for e := 1; e <= c.events && ok; e++ {
					ok = post("/api/v1/runs/"+runID+"/events", eventBody(e, c.eventIDs), http.StatusCreated, true)
				}
				if ok && post("/api/v1/runs/"+runID+"/finish", []byte(`{"status":"success"}`), http.StatusOK, false) {
					if now := time.Now(); now.Before(w.End) && !now.Before(w.Start) {
						runs.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	r := pipelineLoadResult{total: total.Load(), events: events.Load(), runs: runs.Load(), errors: errs.Load(),
		lat: all.Sorted(), latEvents: evl.Sorted()}
	r.firstErr, _ = firstErr.Load().(string)
	return r
}
