package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

type jwtVector struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"`
	JWKS   json.RawMessage `json:"jwks"`
	Secret string          `json:"secret"`
	Token  string          `json:"token"`
	Sub    string          `json:"sub"`
	Iat    int64           `json:"iat"`
}

type jwtVectors struct {
	BaseURL string      `json:"base_url"`
	Vectors []jwtVector `json:"vectors"`
}

// loadVectors reads the golden vectors that testdata/jwt/generate.mjs made.
func loadVectors(t testing.TB) jwtVectors {
	t.Helper()
	data, err := os.ReadFile("testdata/jwt/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v jwtVectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Vectors) < 8 {
		t.Fatalf("only %d vectors", len(v.Vectors))
	}
	return v
}

// vectorRules are the claim rules Better Auth's tokens are checked by, for
// an issuer at base.
func vectorRules(base string) claimRules {
	return claimRules{issuer: base, audience: base, userClaims: []string{"sub"}}
}

func vectorVerifier(t testing.TB, base string, v jwtVector) *verifiers {
	t.Helper()
	if v.Kind == "hs256" {
		return &verifiers{hs256: newHS256Verifier([]byte(v.Secret), "", "", "")}
	}
	keys, skipped, err := parseJWKS(v.JWKS)
	if err != nil || len(skipped) > 0 || len(keys) != 1 {
		t.Fatalf("%s: JWKS gave %d keys, skipped %v, error %v", v.Name, len(keys), skipped, err)
	}
	return &verifiers{jwks: &jwksVerifier{keys: staticKeys(keys), rules: vectorRules(base)}}
}

// TestGoldenVectors: tokens made by Better Auth's jwt() plugin (every
// algorithm it can sign with) and by jose's SignJWT verify on a pinned
// clock, and fail once any one character of them changes.
func TestGoldenVectors(t *testing.T) {
	t.Parallel()
	vectors := loadVectors(t)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for _, v := range vectors.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			verifier := vectorVerifier(t, vectors.BaseURL, v)
			now := time.Unix(v.Iat+60, 0)
			if got, err := verifier.Verify(v.Token, now); err != nil || got != v.Sub {
				t.Fatalf("Verify = %q, %v; want %q", got, err, v.Sub)
			}
			if _, err := verifier.Verify(v.Token, time.Unix(v.Iat+24*3600, 0)); !errors.Is(err, errTokenExpired) {
				t.Errorf("a day later: %v; want expired", err)
			}
			for i := 0; i < len(v.Token); i++ {
				c := v.Token[i]
				var repl byte = '.'
				if c != '.' {
					repl = alphabet[(strings.IndexByte(alphabet, c)+1)%len(alphabet)]
				} else {
					repl = 'A'
				}
				changed := v.Token[:i] + string(repl) + v.Token[i+1:]
				if got, err := verifier.Verify(changed, now); err == nil {
					t.Fatalf("changing byte %d (%q to %q) still verified as %q", i, c, repl, got)
				}
			}
		})
	}
}

// TestJWKSTokensAreNotHS256Tokens: the two kinds never cross over.
func TestJWKSTokensAreNotHS256Tokens(t *testing.T) {
	t.Parallel()
	vectors := loadVectors(t)
	for _, v := range vectors.Vectors {
		now := time.Unix(v.Iat+60, 0)
		if v.Kind == "jwks" {
			hsOnly := &verifiers{hs256: newHS256Verifier([]byte(testSecret), "", "", "")}
			if _, err := hsOnly.Verify(v.Token, now); !errors.Is(err, errTokenAlgorithm) {
				t.Errorf("%s with JWKS off: %v; want an algorithm error", v.Name, err)
			}
		} else {
			jwksOnly := vectorVerifier(t, vectors.BaseURL, vectors.Vectors[0])
			if _, err := jwksOnly.Verify(v.Token, now); !errors.Is(err, errTokenAlgorithm) {
				t.Errorf("%s with no secret: %v; want an algorithm error", v.Name, err)
			}
		}
	}
}

// staticKeys is a fixed key set, standing in for the JWKS cache.
type staticKeys map[string]publicKey

func (s staticKeys) key(kid string) (publicKey, error) {
	k, ok := s[kid]
	if !ok {
		return publicKey{}, errTokenUnknownKey
	}
	return k, nil
}

// testKey is a key pair the tests sign with, and its JWK.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
	jwk  map[string]any
}

func newTestKey(t *testing.T, alg, kid string) testKey {
	t.Helper()
	k := testKey{kid: kid, alg: alg}
	enc := base64.RawURLEncoding.EncodeToString
	switch alg {
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		k.priv, k.jwk = priv, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": enc(pub)}
	case "ES256", "ES512":
		curve, crv := elliptic.P256(), "P-256"
		if alg == "ES512" {
			curve, crv = elliptic.P521(), "P-521"
		}
		priv, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		size := (curve.Params().BitSize + 7) / 8
		k.priv, k.jwk = priv, map[string]any{"kty": "EC", "crv": crv, "x": enc(priv.X.FillBytes(make([]byte, size))), "y": enc(priv.Y.FillBytes(make([]byte, size)))}
	case "RS256", "PS256":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		k.priv, k.jwk = priv, map[string]any{"kty": "RSA", "n": enc(priv.N.Bytes()), "e": enc(big.NewInt(int64(priv.E)).Bytes())}
	}
	k.jwk["kid"], k.jwk["alg"] = kid, alg
	return k
}

// sign makes a JWS with header alg (which may differ from the key's, to
// test confusion) and kid.
func (k testKey) sign(t *testing.T, alg string, claims map[string]any) string {
	t.Helper()
	header, _ := json.Marshal(map[string]any{"alg": alg, "kid": k.kid})
	payload, _ := json.Marshal(claims)
	input := b64(string(header)) + "." + b64(string(payload))
	var sig []byte
	var err error
	switch priv := k.priv.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(priv, []byte(input))
	case *ecdsa.PrivateKey:
		r, s, e := ecdsa.Sign(rand.Reader, priv, digest(alg, input))
		size := (priv.Curve.Params().BitSize + 7) / 8
		sig, err = append(r.FillBytes(make([]byte, size)), s.FillBytes(make([]byte, size))...), e
	case *rsa.PrivateKey:
		if strings.HasPrefix(alg, "PS") {
			sig, err = rsa.SignPSS(rand.Reader, priv, hashOf(alg), digest(alg, input), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			sig, err = rsa.SignPKCS1v15(rand.Reader, priv, hashOf(alg), digest(alg, input))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func jwksJSON(keys ...testKey) []byte {
	var list []map[string]any
	for _, k := range keys {
		list = append(list, k.jwk)
	}
	b, _ := json.Marshal(map[string]any{"keys": list})
	return b
}

const testOrigin = "http://localhost:3000"

func betterAuthClaims(sub string, now time.Time) map[string]any {
	return map[string]any{
		"sub": sub, "id": sub, "name": "Ada Lovelace", "email": "ada@example.com",
		"iat": now.Unix(), "exp": now.Add(15 * time.Minute).Unix(), "iss": testOrigin, "aud": testOrigin,
	}
}

func TestJWKSAlgorithmRules(t *testing.T) {
	t.Parallel()
	ed := newTestKey(t, "EdDSA", "ed")
	es256 := newTestKey(t, "ES256", "es256")
	es512 := newTestKey(t, "ES512", "es512")
	rs := newTestKey(t, "RS256", "rs")
	ps := newTestKey(t, "PS256", "ps")
	withOct := append(jwksJSON(ed, es256, es512, rs, ps)[:len(jwksJSON(ed, es256, es512, rs, ps))-2],
		[]byte(`,{"kty":"oct","kid":"hmac","k":"`+b64(testSecret)+`"}]}`)...)
	keys, skipped, err := parseJWKS(withOct)
	if err != nil || len(keys) != 5 || len(skipped) != 1 {
		t.Fatalf("parseJWKS = %d keys, skipped %v, %v; want 5 keys and the oct key left out", len(keys), skipped, err)
	}
	cfg := testConfig()
	cfg.authOrigin = testOrigin
	v := newVerifiers(cfg, staticKeys(keys))
	now := pinnedNow
	claims := betterAuthClaims("ada", now)

	for _, k := range []testKey{ed, es256, es512, rs, ps} {
		if got, err := v.Verify(k.sign(t, k.alg, claims), now); err != nil || got != "ada" {
			t.Errorf("%s: Verify = %q, %v; want ada", k.alg, got, err)
		}
	}
	pub := ed.jwk["x"].(string)
	hsWith := func(secret string) string {
		return rawToken(secret, `{"alg":"HS256","kid":"ed"}`, claimsJSON(t, claims))
	}
	confused := []struct {
		name  string
		token string
		want  error
	}{
		{"HS256 keyed with the public key", hsWith(pub), errTokenSignature},
		{"HS256 keyed with the decoded public key", hsWith(string(mustDecode(t, pub))), errTokenSignature},
		{"HS256 keyed with the oct key's secret", rawToken("not-the-server-secret-but-in-the-jwks", `{"alg":"HS256","kid":"hmac"}`, claimsJSON(t, claims)), errTokenSignature},
		{"RS256 header on an Ed25519 key", ed.sign(t, "RS256", claims), errTokenAlgorithm},
		{"ES512 header on a P-256 key", es256.sign(t, "ES512", claims), errTokenAlgorithm},
		{"PS256 on an RS256 key", rs.sign(t, "PS256", claims), errTokenAlgorithm},
		{"RS256 on a PS256 key", ps.sign(t, "RS256", claims), errTokenAlgorithm},
		{"alg none", b64(`{"alg":"none","kid":"ed"}`) + "." + b64(claimsJSON(t, claims)) + ".", errTokenAlgorithm},
		{"HS512", rawToken(testSecret, `{"alg":"HS512","kid":"ed"}`, claimsJSON(t, claims)), errTokenAlgorithm},
		{"no kid", rawTokenAsym(t, ed, `{"alg":"EdDSA"}`, claims), errTokenUnknownKey},
		{"unknown kid", newTestKey(t, "EdDSA", "stranger").sign(t, "EdDSA", claims), errTokenUnknownKey},
		{"kid of another key", testKey{kid: "es256", alg: "EdDSA", priv: ed.priv}.sign(t, "EdDSA", claims), errTokenAlgorithm},
		{"wrong iss", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"iss": "http://evil.example"})), errTokenIssuer},
		{"wrong aud", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"aud": "http://localhost:3001"})), errTokenAudience},
		{"aud with path", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"aud": testOrigin + "/"})), errTokenAudience},
		{"expired", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"exp": now.Add(-time.Minute).Unix()})), errTokenExpired},
		{"no exp", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"exp": absent})), errTokenMissingExp},
		{"user id only in id", ed.sign(t, "EdDSA", withClaims(claims, map[string]any{"sub": absent})), errTokenUserID},
	}
	for _, c := range confused {
		if got, err := v.Verify(c.token, now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %q, %v; want %v", c.name, got, err, c.want)
		}
	}

	// JWT_ISSUER / JWT_AUDIENCE replace the origin for JWKS tokens.
	cfg.tokens.issuer, cfg.tokens.audience = "https://auth.example", "todo-api"
	v = newVerifiers(cfg, staticKeys(keys))
	custom := withClaims(claims, map[string]any{"iss": "https://auth.example", "aud": []string{"todo-api"}})
	if got, err := v.Verify(ed.sign(t, "EdDSA", custom), now); err != nil || got != "ada" {
		t.Errorf("configured iss/aud: %q, %v", got, err)
	}
	if _, err := v.Verify(ed.sign(t, "EdDSA", claims), now); !errors.Is(err, errTokenIssuer) {
		t.Errorf("origin iss with JWT_ISSUER set: %v; want issuer error", err)
	}
}

func rawTokenAsym(t *testing.T, k testKey, header string, claims map[string]any) string {
	t.Helper()
	input := b64(header) + "." + b64(claimsJSON(t, claims))
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.priv.(ed25519.PrivateKey), []byte(input)))
}

func TestParseJWKSRefusesBadKeys(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`not json`, `{"nokeys": []}`, `[]`} {
		if _, _, err := parseJWKS([]byte(doc)); err == nil {
			t.Errorf("parseJWKS(%s) = nil error", doc)
		}
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	for _, key := range []string{
		`{"kty":"OKP","crv":"Ed25519","x":"` + enc(make([]byte, 31)) + `","kid":"short"}`,
		`{"kty":"OKP","crv":"X25519","x":"` + enc(make([]byte, 32)) + `","kid":"x25519"}`,
		`{"kty":"EC","crv":"P-256","x":"` + enc(make([]byte, 32)) + `","y":"` + enc(make([]byte, 32)) + `","kid":"offcurve"}`,
		`{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA","kid":"k1"}`,
		`{"kty":"RSA","n":"` + enc(small.N.Bytes()) + `","e":"AQAB","kid":"small"}`,
		`{"kty":"OKP","crv":"Ed25519","x":"` + enc(make([]byte, 32)) + `"}`,
		`{"kty":"OKP","crv":"Ed25519","x":"` + enc(make([]byte, 32)) + `","kid":"enc","use":"enc"}`,
		`{"kty":"OKP","crv":"Ed25519","x":"` + enc(make([]byte, 32)) + `","kid":"ops","key_ops":["sign"]}`,
		`{"kty":"OKP","crv":"Ed25519","x":"` + enc(make([]byte, 32)) + `","kid":"alg","alg":"RS256"}`,
		`{"kty":"oct","k":"c2VjcmV0","kid":"oct"}`,
		`"a string"`,
	} {
		keys, skipped, err := parseJWKS([]byte(`{"keys":[` + key + `]}`))
		if err != nil || len(keys) != 0 || len(skipped) != 1 {
			t.Errorf("key %s: %d keys, skipped %v, %v; want it left out", key, len(keys), skipped, err)
		}
	}
	ed := newTestKey(t, "EdDSA", "twin")
	keys, _, _ := parseJWKS(jwksJSON(ed, newTestKey(t, "EdDSA", "twin")))
	if len(keys) != 0 {
		t.Error("two keys with one kid: want neither trusted")
	}
}

// jwksServer serves a JWKS that a test can swap, break or redirect, and
// counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches int
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetches++
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/api/auth/jwks", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func TestJWKSCache(t *testing.T) {
	t.Parallel()
	a, b := newTestKey(t, "EdDSA", "key-a"), newTestKey(t, "EdDSA", "key-b")
	server := newJWKSServer(t, jwksJSON(a))
	logs := &syncBuffer{}
	cache := newJWKSCache(server.URL+"/api/auth/jwks", slog.New(slog.NewJSONHandler(logs, nil)))
	clock := pinnedNow
	cache.now = func() time.Time { return clock }
	cache.start(context.Background())
	cfg := testConfig()
	cfg.authOrigin = testOrigin
	v := newVerifiers(cfg, cache)
	verify := func(k testKey) error {
		_, err := v.Verify(k.sign(t, "EdDSA", betterAuthClaims("ada", clock)), clock)
		return err
	}

	if err := verify(a); err != nil || server.count() != 1 {
		t.Fatalf("key a: %v after %d fetches; want accepted after the start-up fetch", err, server.count())
	}

	// Rotation: the issuer now publishes only b. A token with b's kid
	// triggers one refetch; a is gone from then on.
	server.set(http.StatusOK, jwksJSON(b))
	clock = clock.Add(jwksMinRefetch)
	if err := verify(b); err != nil || server.count() != 2 {
		t.Fatalf("rotated-in key b: %v after %d fetches; want accepted after one refetch", err, server.count())
	}
	if err := verify(a); !errors.Is(err, errTokenUnknownKey) {
		t.Fatalf("rotated-out key a: %v; want unknown key", err)
	}

	// Unknown kids refetch at most once per jwksMinRefetch, however many.
	clock = clock.Add(jwksMinRefetch)
	before := server.count()
	// Keys and tokens are made here: newTestKey and sign may end the test,
	// which only the test's own goroutine may do.
	forged := make([]string, 50)
	for i := range forged {
		forged[i] = newTestKey(t, "EdDSA", fmt.Sprintf("forged-%d", i)).sign(t, "EdDSA", betterAuthClaims("ada", clock))
	}
	var wg sync.WaitGroup
	for _, token := range forged {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Verify(token, clock); !errors.Is(err, errTokenUnknownKey) {
				t.Errorf("forged kid: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := server.count() - before; n != 1 {
		t.Fatalf("50 unknown kids caused %d fetches; want 1", n)
	}
	if err := verify(b); err != nil {
		t.Fatalf("known key after the storm: %v", err)
	}

	// Broken answers keep the keys already held.
	for _, broken := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"malformed", http.StatusOK, []byte(`{"keys": [`)},
		{"not a key set", http.StatusOK, []byte(`{"hello": "world"}`)},
		{"no usable key", http.StatusOK, []byte(`{"keys": [{"kty": "oct", "kid": "x", "k": "c2VjcmV0"}]}`)},
		{"oversized", http.StatusOK, append(append([]byte(`{"keys":[],"pad":"`), bytes.Repeat([]byte("x"), jwksMaxBytes)...), '"', '}')},
		{"server error", http.StatusInternalServerError, []byte(`oops`)},
	} {
		server.set(broken.status, broken.body)
		clock = clock.Add(jwksMinRefetch)
		if err := verify(newTestKey(t, "EdDSA", "unknown-"+broken.name)); !errors.Is(err, errTokenUnknownKey) {
			t.Errorf("%s: unknown kid %v", broken.name, err)
		}
		if err := verify(b); err != nil {
			t.Errorf("%s JWKS: known key b now fails: %v", broken.name, err)
		}
	}
	if !strings.Contains(logs.String(), "JWKS fetch failed") {
		t.Errorf("failed fetches not logged:\n%s", logs)
	}

	// A stale set is refreshed in the background, dropping rotated-out keys.
	server.set(http.StatusOK, jwksJSON(a))
	clock = clock.Add(jwksMaxAge + time.Second)
	verify(b) // served from the cache, triggers the refresh
	deadline := time.Now().Add(5 * time.Second)
	for verify(a) != nil {
		if time.Now().After(deadline) {
			t.Fatal("stale key set never refreshed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJWKSFetchEdges(t *testing.T) {
	t.Parallel()
	a := newTestKey(t, "EdDSA", "key-a")
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))

	// Unreachable at start: no error, no keys, a later fetch recovers.
	addr := closedAddr(t)
	cache := newJWKSCache("http://"+addr+"/api/auth/jwks", logger)
	clock := pinnedNow
	cache.now = func() time.Time { return clock }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache.start(ctx)
	if _, err := cache.key("key-a"); !errors.Is(err, errTokenUnknownKey) {
		t.Fatalf("unreachable JWKS: %v", err)
	}

	// Same-host redirects are followed; other hosts are refused.
	server := newJWKSServer(t, jwksJSON(a))
	moved := newJWKSCache(server.URL+"/moved", logger)
	if _, err := moved.key("key-a"); err != nil {
		t.Errorf("same-host redirect: %v", err)
	}
	elsewhere := httptest.NewServer(http.RedirectHandler(server.URL+"/api/auth/jwks", http.StatusFound))
	defer elsewhere.Close()
	redirected := newJWKSCache(elsewhere.URL+"/api/auth/jwks", logger)
	if _, err := redirected.fetch(); err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("redirect to another host: %v; want refused", err)
	}
}

func TestBetterAuthSettings(t *testing.T) {
	t.Parallel()
	env := func(extra map[string]string) func(string) string {
		vars := map[string]string{"DATABASE_URL": "host=x"}
		for k, v := range extra {
			vars[k] = v
		}
		return envFrom(vars)
	}
	for _, raw := range []string{"http://localhost:3000", "http://localhost:3000/", "http://localhost:3000/api/auth", "http://localhost:3000/api/auth/"} {
		cfg, err := loadConfig(env(map[string]string{"BETTER_AUTH_URL": raw}))
		if err != nil {
			t.Fatalf("BETTER_AUTH_URL=%s: %v", raw, err)
		}
		if cfg.authOrigin != testOrigin || cfg.jwksURL != testOrigin+"/api/auth/jwks" || cfg.tokens.secret != nil {
			t.Errorf("BETTER_AUTH_URL=%s: origin %q, JWKS %q, secret %v", raw, cfg.authOrigin, cfg.jwksURL, cfg.tokens.secret)
		}
	}
	cfg, err := loadConfig(env(map[string]string{"BETTER_AUTH_URL": "https://app.example.com", "JWKS_URL": "https://keys.example.com/jwks.json", "BETTER_AUTH_SECRET": testSecret}))
	if err != nil || cfg.jwksURL != "https://keys.example.com/jwks.json" || cfg.tokens.secret == nil {
		t.Errorf("JWKS_URL override with a secret: %+v, %v", cfg, err)
	}
	for name, vars := range map[string]map[string]string{
		"BETTER_AUTH_URL":    {"BETTER_AUTH_URL": "localhost:3000"},
		"JWKS_URL":           {"JWKS_URL": "https://keys.example.com/jwks.json"},
		"BETTER_AUTH_SECRET": {"BETTER_AUTH_URL": "https://app.example.com", "BETTER_AUTH_SECRET": "short"},
	} {
		if _, err := loadConfig(env(vars)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%v: %v; want an error naming %s", vars, err, name)
		}
	}
}

// TestBetterAuthTokenOwnsTasks: with BETTER_AUTH_URL's JWKS served, a token
// that Better Auth's default configuration signed is accepted and its sub
// owns the tasks, and HS256 keeps working beside it.
func TestBetterAuthTokenOwnsTasks(t *testing.T) {
	t.Parallel()
	vectors := loadVectors(t)
	golden := vectors.Vectors[0]
	if golden.Name != "better-auth-default-eddsa" {
		t.Fatalf("first vector is %s", golden.Name)
	}
	server := newJWKSServer(t, golden.JWKS)
	cfg := testConfig()
	cfg.authOrigin = vectors.BaseURL
	now := time.Unix(golden.Iat+60, 0)
	cfg.clock = func() time.Time { return now }
	cache := newJWKSCache(server.URL+"/api/auth/jwks", slog.New(slog.NewJSONHandler(io.Discard, nil)))
	cache.now = cfg.clock
	logs := &syncBuffer{}
	handler := handlerOf(newServer(slog.New(slog.NewJSONHandler(logs, nil)), testStore, newVerifiers(cfg, cache), cfg, nil))
	srv := &testServer{Server: httptest.NewServer(handler), logs: logs}
	defer srv.Close()

	// The vector's user may exist from an earlier run on a shared database.
	testDB.Exec(`DELETE FROM tasks WHERE user_id = $1`, golden.Sub)
	res := srv.request(t, "POST", "/api/tasks", golden.Token, map[string]any{"title": "from Better Auth"})
	if res.status != http.StatusCreated {
		t.Fatalf("POST with a Better Auth token = %s", res)
	}
	if task := decodeTask(t, res); task.UserID != golden.Sub {
		t.Fatalf("task owned by %q; want the token's sub %q", task.UserID, golden.Sub)
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", golden.Token, nil)); len(list) != 1 || list[0].UserID != golden.Sub {
		t.Fatalf("list for the Better Auth user = %+v", list)
	}

	hs, err := newHS256Verifier([]byte(testSecret), "", "", "").Sign(map[string]any{"sub": newUser(t), "exp": now.Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", hs, nil)); len(list) != 0 {
		t.Fatalf("an HS256 user sees %+v", list)
	}
	other := newTestKey(t, "EdDSA", "not-published")
	for name, token := range map[string]string{
		"unknown key": other.sign(t, "EdDSA", betterAuthClaims(golden.Sub, now)),
		"alg changed": strings.Replace(golden.Token, strings.Split(golden.Token, ".")[0], b64(`{"alg":"ES256","kid":"x"}`), 1),
	} {
		t.Run(name, func(t *testing.T) {
			wantError(t, srv.request(t, "GET", "/api/tasks", token, nil), http.StatusUnauthorized, codeAuthenticationRequired)
		})
	}
	// Personal claims never reach the log.
	if l := logs.String(); strings.Contains(l, "ada@example.com") || strings.Contains(l, "Ada Lovelace") || strings.Contains(l, golden.Token) {
		t.Errorf("log carries claims or the token:\n%s", l)
	}
	if !strings.Contains(logs.String(), golden.Sub) {
		t.Errorf("log lacks the user id")
	}
}

// TestRunWithUnreachableJWKS: the real program starts although its JWKS
// cannot be fetched, and HS256 tokens keep working.
func TestRunWithUnreachableJWKS(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"BETTER_AUTH_URL": "http://" + addr}))
	defer func() { stop(); <-done }()
	srv := &testServer{Server: &httptest.Server{URL: base}}
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "HS256 still works"})
	if !strings.Contains(logs.String(), "JWKS fetch failed") {
		t.Errorf("the failed JWKS fetch was not logged:\n%s", logs)
	}
}

// TestRunAcceptsJWKSTokens goes through the real program's settings:
// BETTER_AUTH_URL (with a path and a trailing slash) names the JWKS server,
// and a token in the shape Better Auth's default configuration signs is
// accepted beside HS256 ones.
func TestRunAcceptsJWKSTokens(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "EdDSA", "current")
	server := newJWKSServer(t, jwksJSON(key))
	base, stop, done, _ := startProgram(t, baseEnv(map[string]string{"BETTER_AUTH_URL": server.URL + "/api/auth/"}))
	defer func() { stop(); <-done }()
	srv := &testServer{Server: &httptest.Server{URL: base}}

	user := newUser(t)
	claims := betterAuthClaims(user, time.Now())
	claims["iss"], claims["aud"] = server.URL, server.URL
	token := key.sign(t, "EdDSA", claims)
	task := mustCreate(t, srv, token, map[string]any{"title": "signed by the plugin's key"})
	if task.UserID != user {
		t.Fatalf("task owned by %q; want %q", task.UserID, user)
	}
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "HS256 beside it"})

	claims["aud"] = "http://elsewhere.example"
	wantError(t, srv.request(t, "GET", "/api/tasks", key.sign(t, "EdDSA", claims), nil), http.StatusUnauthorized, codeAuthenticationRequired)
	if server.count() != 1 {
		t.Errorf("JWKS fetched %d times; want once, at start", server.count())
	}
}
