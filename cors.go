package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsPolicy says which browser origins may call the API.
type corsPolicy struct {
	anyOrigin bool
	origins   map[string]bool
}

func parseCORSOrigins(s string) (corsPolicy, error) {
	if strings.TrimSpace(s) == "*" {
		return corsPolicy{anyOrigin: true}, nil
	}
	p := corsPolicy{origins: map[string]bool{}}
	for _, origin := range strings.Split(s, ",") {
		origin = strings.TrimSuffix(strings.TrimSpace(origin), "/")
		if origin == "" {
			continue
		}
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return corsPolicy{}, fmt.Errorf("%q is not an origin such as https://app.example.com (or use * alone)", origin)
		}
		p.origins[origin] = true
	}
	if len(p.origins) == 0 {
		return corsPolicy{}, errors.New("no origin given")
	}
	return p, nil
}

const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID"
	corsExposeHeaders = "ETag, Location, X-Request-ID, Idempotent-Replayed, Retry-After"
)

// middleware adds CORS headers to every answer, errors included (without
// them a browser hides the status from the frontend), and answers
// preflights before authentication, as browsers send them without tokens.
func (p corsPolicy) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		origin := r.Header.Get("Origin")
		allowed := origin != "" && (p.anyOrigin || p.origins[origin])
		if !p.anyOrigin {
			h.Add("Vary", "Origin")
		}
		if allowed {
			if p.anyOrigin {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Credentials", "true")
			}
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if allowed {
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
