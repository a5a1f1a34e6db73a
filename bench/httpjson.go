package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DoJSON sends one request with a JSON body (nil: none) and an optional
// Authorization value, and returns the status, the body (at most 4 MiB) and
// how long the round trip took.
func DoJSON(ctx context.Context, c *http.Client, method, url, auth string, body []byte) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, time.Since(start), err
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return resp.StatusCode, b, d, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return resp.StatusCode, b, d, nil
}

// UTCDay formats t's UTC date as YYYY-MM-DD.
func UTCDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }
