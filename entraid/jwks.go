package entraid

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ica-governance/ica"
)

// defaultFailureBackoff is how long, with no keys cached, a failed fetch is
// remembered before the next request may try again. It keeps a down key
// endpoint from being hammered once per request.
const defaultFailureBackoff = 10 * time.Second

// minRSABits is the smallest modulus accepted from the key set.
const minRSABits = 2048

type signingKey struct {
	pub    *rsa.PublicKey
	issuer string // the key's issuer, possibly with {tenantid}; "" if none
}

// keyCache holds the tenant's signing keys. One fetch runs at a time; every
// caller that needs it waits for that one.
type keyCache struct {
	clock       ica.Clock
	refresh     time.Duration
	minRefresh  time.Duration
	failBackoff time.Duration
	timeout     time.Duration
	client      *http.Client
	jwksURL     string
	metadataURL string

	mu          sync.Mutex
	keys        map[string]signingKey // nil until the first successful fetch
	fetchedAt   time.Time             // last successful fetch
	lastAttempt time.Time             // start of the last fetch, successful or not
	lastErr     error                 // error of the last fetch, nil if it succeeded
	inflight    *fetchCall
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// since returns how long ago t was, or a very long time when t is zero or
// the clock has gone backwards (so that a refresh is allowed).
func since(now, t time.Time) time.Duration {
	if t.IsZero() || now.Before(t) {
		return 1<<63 - 1
	}
	return now.Sub(t)
}

// key returns the key for kid, fetching the key set when it has never been
// fetched, is older than the refresh interval, or lacks kid (at most once
// per minRefresh).
func (c *keyCache) key(ctx context.Context, kid string) (signingKey, error) {
	waited := false
	for {
		c.mu.Lock()
		now := c.clock.Now()
		k, known := c.keys[kid]
		stale := since(now, c.fetchedAt) >= c.refresh
		if known && (!stale || c.inflight != nil) {
			// A refresh under way does not hold up callers whose key is
			// already cached.
			c.mu.Unlock()
			return k, nil
		}
		call := c.inflight
		if call == nil && !waited && c.mayFetch(now) {
			call = c.start(now)
		}
		if call == nil {
			err := c.missing(known, kid)
			c.mu.Unlock()
			if known {
				return k, nil // stale, but a refresh was tried recently
			}
			return signingKey{}, err
		}
		c.mu.Unlock()

		select {
		case <-call.done:
		case <-ctx.Done():
			return signingKey{}, ica.Unavailable("signing keys not available", ctx.Err())
		}
		waited = true
	}
}

// missing returns the error for a kid not in the cache. Called with mu held.
func (c *keyCache) missing(known bool, kid string) error {
	if known {
		return nil
	}
	if c.keys == nil {
		cause := c.lastErr
		if cause == nil {
			cause = errors.New("no keys fetched")
		}
		return ica.Unavailable("signing keys not available", cause)
	}
	return refuse("unknown signing key %s", show(kid))
}

// mayFetch reports whether a new fetch may start now. Called with mu held.
func (c *keyCache) mayFetch(now time.Time) bool {
	wait := c.minRefresh
	if c.keys == nil {
		wait = c.failBackoff
	}
	return since(now, c.lastAttempt) >= wait
}

// start begins a fetch in its own goroutine, bounded by c.timeout, so that
// a caller giving up (its request cancelled) does not abort it for the
// others. Called with mu held.
func (c *keyCache) start(now time.Time) *fetchCall {
	call := &fetchCall{done: make(chan struct{})}
	c.inflight = call
	c.lastAttempt = now
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		keys, err := c.load(ctx)

		c.mu.Lock()
		if err == nil {
			c.keys = keys
			c.fetchedAt = c.clock.Now()
		}
		// On failure the old keys stay: stale keys beat no keys.
		c.lastErr = err
		call.err = err
		c.inflight = nil
		c.mu.Unlock()
		close(call.done)
	}()
	return call
}

// forceRefresh fetches now, or joins the fetch under way.
func (c *keyCache) forceRefresh(ctx context.Context) error {
	c.mu.Lock()
	call := c.inflight
	if call == nil {
		call = c.start(c.clock.Now())
	}
	c.mu.Unlock()
	select {
	case <-call.done:
	case <-ctx.Done():
		return ica.Unavailable("signing keys not available", ctx.Err())
	}
	if call.err != nil {
		return ica.Unavailable("signing keys not available", call.err)
	}
	return nil
}

// load fetches the key set, through discovery unless jwksURL is set.
func (c *keyCache) load(ctx context.Context) (map[string]signingKey, error) {
	jwksURL := c.jwksURL
	if jwksURL == "" {
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := c.getJSON(ctx, c.metadataURL, &meta); err != nil {
			return nil, fmt.Errorf("openid configuration: %w", err)
		}
		if meta.JWKSURI == "" {
			return nil, fmt.Errorf("openid configuration %s: no jwks_uri", c.metadataURL)
		}
		u, err := url.Parse(meta.JWKSURI)
		if err != nil || checkURL(meta.JWKSURI) != nil {
			return nil, fmt.Errorf("openid configuration %s: bad jwks_uri", c.metadataURL)
		}
		// The key set must be at least as well protected as the metadata.
		if m, _ := url.Parse(c.metadataURL); m != nil && m.Scheme == "https" && u.Scheme != "https" {
			return nil, fmt.Errorf("openid configuration %s: jwks_uri is not https", c.metadataURL)
		}
		jwksURL = meta.JWKSURI
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := c.getJSON(ctx, jwksURL, &set); err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	keys := make(map[string]signingKey, len(set.Keys))
	for _, raw := range set.Keys {
		kid, k, ok := parseJWK(raw)
		if !ok {
			continue // not an RSA signing key we can use: skip it, keep the others
		}
		if _, dup := keys[kid]; !dup {
			keys[kid] = k
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key set %s: no usable RSA signing keys", jwksURL)
	}
	return keys, nil
}

func parseJWK(raw json.RawMessage) (string, signingKey, bool) {
	var j struct {
		Kty    string `json:"kty"`
		Use    string `json:"use"`
		Alg    string `json:"alg"`
		Kid    string `json:"kid"`
		N      string `json:"n"`
		E      string `json:"e"`
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return "", signingKey{}, false
	}
	if j.Kty != "RSA" || j.Kid == "" || (j.Use != "" && j.Use != "sig") || (j.Alg != "" && j.Alg != "RS256") {
		return "", signingKey{}, false
	}
	nb, err := base64.RawURLEncoding.DecodeString(j.N)
	if err != nil {
		return "", signingKey{}, false
	}
	eb, err := base64.RawURLEncoding.DecodeString(j.E)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return "", signingKey{}, false
	}
	n := new(big.Int).SetBytes(nb)
	if n.BitLen() < minRSABits {
		return "", signingKey{}, false
	}
	e := 0
	for _, b := range eb {
		e = e<<8 | int(b)
	}
	if e < 3 || e%2 == 0 || e > 1<<31-1 {
		return "", signingKey{}, false
	}
	return j.Kid, signingKey{pub: &rsa.PublicKey{N: n, E: e}, issuer: j.Issuer}, true
}

// getJSON GETs u and decodes at most maxDocumentSize bytes of JSON from it.
func (c *keyCache) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentSize))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxDocumentSize {
		return fmt.Errorf("GET %s: document larger than %d bytes", u, maxDocumentSize)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
