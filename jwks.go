package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

const (
	// jwksMinRefetch: however many tokens name unknown keys, the JWKS is
	// fetched at most this often, so forged kids cannot hammer the issuer.
	jwksMinRefetch = 30 * time.Second
	// jwksMaxAge: a key set this old is refreshed in the background, so a
	// key the issuer has rotated out stops working without waiting for an
	// unknown kid.
	jwksMaxAge = 5 * time.Minute
	// jwksFetchTimeout bounds one fetch; a request waits at most this long
	// for a key it does not know yet.
	jwksFetchTimeout = 3 * time.Second
	// jwksMaxBytes bounds the document.
	jwksMaxBytes = 256 << 10
)

// jwksCache holds the issuer's public keys by kid, fetched from its JWKS
// URL at start and again when a token names a kid it does not hold.
type jwksCache struct {
	url    string
	client *http.Client
	logger *slog.Logger
	now    func() time.Time

	mu        sync.RWMutex
	keys      map[string]publicKey
	fetchedAt time.Time // of the last good fetch

	fetchMu     sync.Mutex // one fetch at a time; waiters share its result
	lastAttempt time.Time
}

func newJWKSCache(jwksURL string, logger *slog.Logger) *jwksCache {
	c := &jwksCache{url: jwksURL, logger: logger, now: time.Now, keys: map[string]publicKey{}}
	c.client = &http.Client{
		Timeout: jwksFetchTimeout,
		// A redirect may move the path, never the host: the keys must come
		// from the issuer the operator named.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("too many redirects")
			}
			if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
				return fmt.Errorf("redirect to another host (%s) refused", req.URL.Host)
			}
			return nil
		},
	}
	return c
}

// start fetches the keys once; if that fails the server still starts
// (HS256 keeps working) and a goroutine retries until it succeeds or ctx
// ends.
func (c *jwksCache) start(ctx context.Context) {
	if c.refresh() {
		return
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(jwksMinRefetch):
			}
			if c.refresh() {
				return
			}
		}
	}()
}

// key returns the key with kid, fetching the set again (at most once per
// jwksMinRefetch) when it does not hold it.
func (c *jwksCache) key(kid string) (publicKey, error) {
	c.mu.RLock()
	k, ok := c.keys[kid]
	stale := c.now().Sub(c.fetchedAt) > jwksMaxAge
	c.mu.RUnlock()
	if ok {
		if stale {
			go c.refresh()
		}
		return k, nil
	}
	c.refresh()
	c.mu.RLock()
	k, ok = c.keys[kid]
	c.mu.RUnlock()
	if !ok {
		return publicKey{}, errTokenUnknownKey
	}
	return k, nil
}

// refresh fetches the key set unless a fetch was tried within
// jwksMinRefetch, and reports whether the cache now holds a fresh set.
// A failed fetch keeps the keys already held.
func (c *jwksCache) refresh() bool {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	now := c.now()
	if !c.lastAttempt.IsZero() && now.Sub(c.lastAttempt) < jwksMinRefetch {
		return false
	}
	c.lastAttempt = now
	keys, err := c.fetch()
	if err != nil {
		c.logger.Warn("JWKS fetch failed; keeping the keys already held", "url", c.url, "error", err.Error())
		return false
	}
	c.mu.Lock()
	c.keys, c.fetchedAt = keys, now
	c.mu.Unlock()
	c.logger.Info("JWKS fetched", "url", c.url, "keys", len(keys))
	return true
}

func (c *jwksCache) fetch() (map[string]publicKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > jwksMaxBytes {
		return nil, fmt.Errorf("document larger than %d bytes", jwksMaxBytes)
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		c.logger.Warn("JWKS key left out", "url", c.url, "reason", s.Error())
	}
	if len(keys) == 0 {
		return nil, errors.New("no usable verification key in the set")
	}
	return keys, nil
}

// betterAuthOrigin is scheme://host[:port] of BETTER_AUTH_URL, whatever
// path or trailing slash it carries: Better Auth's iss and aud.
func betterAuthOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL such as https://app.example.com", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}
