package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// Client wraps model.Client4 with the bot's token and turns Mattermost's
// answers into ICA's retry classification.
type Client struct {
	api *model.Client4
	url string
}

// NewClient returns a client for the server at url with the bot's access token.
func NewClient(url, token string, hc *http.Client) *Client {
	api := model.NewAPIv4Client(url)
	api.SetToken(token)
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	api.HTTPClient = hc
	return &Client{api: api, url: url}
}

// API exposes the underlying Client4.
func (c *Client) API() *model.Client4 { return c.api }

// URL returns the server's base URL.
func (c *Client) URL() string { return c.url }

// classify reports whether a failed call is worth retrying, and wraps the
// error with what was being done. The token is never part of the error.
func classify(what string, resp *model.Response, err error) (retry bool, out error) {
	if err == nil {
		return false, nil
	}
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	out = fmt.Errorf("mattermost %s: %w", what, err)
	var ae *model.AppError
	if errors.As(err, &ae) && ae.StatusCode != 0 && status == 0 {
		status = ae.StatusCode
	}
	switch {
	case status == 0:
		return true, out // network error, timeout
	case status == http.StatusTooManyRequests:
		wait := 10 * time.Second
		if resp != nil {
			if s, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
		}
		return true, &ica.RetryAfterError{After: wait, Err: out}
	case status == http.StatusRequestTimeout || status >= 500:
		return true, out
	}
	return false, out
}

// statusOf returns the HTTP status of a failed call's error (0: none, or
// no answer).
func statusOf(err error) int {
	var ae *model.AppError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// call runs fn with a deadline and classifies its outcome.
func call[T any](ctx context.Context, what string, fn func(ctx context.Context) (T, *model.Response, error)) (T, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, resp, err := fn(ctx)
	retry, err := classify(what, resp, err)
	return v, retry, err
}

// ClientConfig reads GET /api/v4/config/client?format=old (a 6.x server
// requires format=old; newer servers accept it too) with the bot's token,
// which adds the settings only logged-in users see (ShowEmailAddress).
func (c *Client) ClientConfig(ctx context.Context) (map[string]string, *model.Response, error) {
	r, err := c.api.DoAPIGet(ctx, "/config/client?format=old", "")
	if err != nil {
		return nil, model.BuildResponse(r), err
	}
	defer r.Body.Close()
	return model.DecodeJSONFromResponse[map[string]string](r)
}
