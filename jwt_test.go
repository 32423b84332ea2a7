package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pinnedNow is the clock every verifier test runs at.
var pinnedNow = time.Date(2026, 1, 18, 10, 0, 0, 0, time.UTC)

// rawToken signs any header and payload text with secret, so tests can
// build tokens the signer would never make.
func rawToken(secret, header, payload string) string {
	v := newHS256Verifier([]byte(secret), "", "", "")
	input := b64(header) + "." + b64(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(v.sign(input))
}

// absent, as a value in withClaims, removes the claim.
var absent = &struct{ absent bool }{true}

// withClaims is a copy of claims with changes applied; a change to absent
// removes the claim (and nil sets it to JSON null).
func withClaims(claims, changes map[string]any) map[string]any {
	c := map[string]any{}
	for k, v := range claims {
		c[k] = v
	}
	for k, v := range changes {
		if v == absent {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func claimsJSON(t *testing.T, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	now := pinnedNow.Unix()
	valid := map[string]any{"sub": "alice", "exp": now + 60}
	with := func(changes map[string]any) map[string]any { return withClaims(valid, changes) }
	hs256 := `{"alg":"HS256","typ":"JWT"}`
	sign := func(claims map[string]any) string { return rawToken(testSecret, hs256, claimsJSON(t, claims)) }
	good := sign(valid)
	goodParts := strings.Split(good, ".")

	tests := []struct {
		name     string
		token    string
		issuer   string
		audience string
		claim    string
		wantID   string
		wantErr  error
	}{
		{name: "valid", token: good, wantID: "alice"},
		{name: "header without typ", token: rawToken(testSecret, `{"alg":"HS256"}`, claimsJSON(t, valid)), wantID: "alice"},
		{name: "alg none unsigned", token: b64(`{"alg":"none"}`) + "." + goodParts[1] + ".", wantErr: errTokenAlgorithm},
		{name: "alg none signed", token: rawToken(testSecret, `{"alg":"none"}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "alg HS512", token: rawToken(testSecret, `{"alg":"HS512"}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "alg RS256", token: rawToken(testSecret, `{"alg":"RS256"}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "alg lower case", token: rawToken(testSecret, `{"alg":"hs256"}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "alg missing", token: rawToken(testSecret, `{"typ":"JWT"}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "alg not a string", token: rawToken(testSecret, `{"alg":256}`, claimsJSON(t, valid)), wantErr: errTokenAlgorithm},
		{name: "crit header", token: rawToken(testSecret, `{"alg":"HS256","crit":["exp"]}`, claimsJSON(t, valid)), wantErr: errTokenCrit},
		{name: "crit null", token: rawToken(testSecret, `{"alg":"HS256","crit":null}`, claimsJSON(t, valid)), wantErr: errTokenCrit},
		{name: "header not JSON", token: rawToken(testSecret, `not json`, claimsJSON(t, valid)), wantErr: errTokenMalformed},
		{name: "header an array", token: rawToken(testSecret, `["HS256"]`, claimsJSON(t, valid)), wantErr: errTokenMalformed},
		{name: "header null", token: rawToken(testSecret, `null`, claimsJSON(t, valid)), wantErr: errTokenMalformed},
		{name: "tampered payload", token: goodParts[0] + "." + b64(claimsJSON(t, with(map[string]any{"sub": "mallory"}))) + "." + goodParts[2], wantErr: errTokenSignature},
		{name: "tampered header", token: b64(`{"alg":"HS256" }`) + "." + goodParts[1] + "." + goodParts[2], wantErr: errTokenSignature},
		{name: "other secret", token: rawToken("another-secret-that-is-32-bytes-or-more", hs256, claimsJSON(t, valid)), wantErr: errTokenSignature},
		{name: "truncated signature", token: good[:len(good)-2], wantErr: errTokenSignature},
		{name: "empty signature", token: goodParts[0] + "." + goodParts[1] + ".", wantErr: errTokenSignature},
		{name: "padded signature", token: good + "=", wantErr: errTokenSignature},
		{name: "standard base64 signature", token: goodParts[0] + "." + goodParts[1] + "." + base64.StdEncoding.EncodeToString(mustDecode(t, goodParts[2])), wantErr: errTokenSignature},
		{name: "padded header", token: goodParts[0] + "=." + goodParts[1] + "." + goodParts[2], wantErr: errTokenMalformed},
		{name: "two segments", token: goodParts[0] + "." + goodParts[1], wantErr: errTokenMalformed},
		{name: "four segments", token: good + ".x", wantErr: errTokenMalformed},
		{name: "one segment", token: "abc", wantErr: errTokenMalformed},
		{name: "empty", token: "", wantErr: errTokenMalformed},
		{name: "too large", token: sign(with(map[string]any{"pad": strings.Repeat("x", maxTokenBytes)})), wantErr: errTokenTooLarge},
		{name: "payload not JSON", token: rawToken(testSecret, hs256, `{"sub":`), wantErr: errTokenMalformed},
		{name: "payload an array", token: rawToken(testSecret, hs256, `[1]`), wantErr: errTokenMalformed},
		{name: "payload with trailing data", token: rawToken(testSecret, hs256, claimsJSON(t, valid)+"x"), wantErr: errTokenMalformed},
		{name: "payload not base64", token: goodParts[0] + ".!!!." + goodParts[2], wantErr: errTokenSignature},
		{name: "exp missing", token: sign(with(map[string]any{"exp": absent})), wantErr: errTokenMissingExp},
		{name: "exp a string", token: sign(with(map[string]any{"exp": strconv.FormatInt(now+60, 10)})), wantErr: errTokenMalformed},
		{name: "exp null", token: sign(with(map[string]any{"exp": nil})), wantErr: errTokenMalformed},
		{name: "exp a boolean", token: sign(with(map[string]any{"exp": true})), wantErr: errTokenMalformed},
		{name: "exp huge", token: sign(with(map[string]any{"exp": 1e300})), wantErr: errTokenMalformed},
		{name: "exp fractional", token: sign(with(map[string]any{"exp": float64(now) + 0.5})), wantID: "alice"},
		{name: "expired beyond leeway", token: sign(with(map[string]any{"exp": now - 30})), wantErr: errTokenExpired},
		{name: "expired within leeway", token: sign(with(map[string]any{"exp": now - 29})), wantID: "alice"},
		{name: "nbf beyond leeway", token: sign(with(map[string]any{"nbf": now + 31})), wantErr: errTokenNotYetValid},
		{name: "nbf within leeway", token: sign(with(map[string]any{"nbf": now + 30})), wantID: "alice"},
		{name: "nbf a string", token: sign(with(map[string]any{"nbf": "soon"})), wantErr: errTokenMalformed},
		{name: "iat beyond leeway", token: sign(with(map[string]any{"iat": now + 31})), wantErr: errTokenIssuedFuture},
		{name: "iat within leeway", token: sign(with(map[string]any{"iat": now + 30})), wantID: "alice"},
		{name: "iat past", token: sign(with(map[string]any{"iat": now - 3600})), wantID: "alice"},
		{name: "iat a string", token: sign(with(map[string]any{"iat": "now"})), wantErr: errTokenMalformed},
		{name: "iss matches", issuer: "https://auth.example", token: sign(with(map[string]any{"iss": "https://auth.example"})), wantID: "alice"},
		{name: "iss differs", issuer: "https://auth.example", token: sign(with(map[string]any{"iss": "https://evil.example"})), wantErr: errTokenIssuer},
		{name: "iss missing", issuer: "https://auth.example", token: good, wantErr: errTokenIssuer},
		{name: "iss not a string", issuer: "https://auth.example", token: sign(with(map[string]any{"iss": []string{"https://auth.example"}})), wantErr: errTokenIssuer},
		{name: "iss ignored when not configured", token: sign(with(map[string]any{"iss": "anyone"})), wantID: "alice"},
		{name: "aud string matches", audience: "todo", token: sign(with(map[string]any{"aud": "todo"})), wantID: "alice"},
		{name: "aud array contains", audience: "todo", token: sign(with(map[string]any{"aud": []string{"other", "todo"}})), wantID: "alice"},
		{name: "aud array lacks", audience: "todo", token: sign(with(map[string]any{"aud": []string{"other"}})), wantErr: errTokenAudience},
		{name: "aud string differs", audience: "todo", token: sign(with(map[string]any{"aud": "other"})), wantErr: errTokenAudience},
		{name: "aud missing", audience: "todo", token: good, wantErr: errTokenAudience},
		{name: "aud a number", audience: "todo", token: sign(with(map[string]any{"aud": 7})), wantErr: errTokenAudience},
		{name: "aud array of numbers", audience: "todo", token: sign(with(map[string]any{"aud": []int{1}})), wantErr: errTokenAudience},
		{name: "user_id claim", token: sign(map[string]any{"user_id": "bob", "exp": now + 60}), wantID: "bob"},
		{name: "userId claim", token: sign(map[string]any{"userId": "carol", "exp": now + 60}), wantID: "carol"},
		{name: "id claim", token: sign(map[string]any{"id": "dave", "exp": now + 60}), wantID: "dave"},
		{name: "sub wins over the others", token: sign(map[string]any{"sub": "alice", "user_id": "bob", "id": "dave", "exp": now + 60}), wantID: "alice"},
		{name: "user_id wins over userId", token: sign(map[string]any{"userId": "carol", "user_id": "bob", "exp": now + 60}), wantID: "bob"},
		{name: "sub a number is not skipped", token: sign(map[string]any{"sub": 42, "user_id": "bob", "exp": now + 60}), wantErr: errTokenUserID},
		{name: "sub null", token: sign(with(map[string]any{"sub": nil})), wantErr: errTokenUserID},
		{name: "sub empty", token: sign(with(map[string]any{"sub": ""})), wantErr: errTokenUserID},
		{name: "sub 255 bytes", token: sign(with(map[string]any{"sub": strings.Repeat("é", 127) + "x"})), wantID: strings.Repeat("é", 127) + "x"},
		{name: "sub 256 bytes", token: sign(with(map[string]any{"sub": strings.Repeat("é", 128)})), wantErr: errTokenUserID},
		{name: "sub with NUL", token: sign(with(map[string]any{"sub": "a\x00b"})), wantErr: errTokenUserID},
		{name: "no user claim", token: sign(map[string]any{"exp": now + 60, "name": "x"}), wantErr: errTokenUserID},
		{name: "configured claim", claim: "uid", token: sign(with(map[string]any{"uid": "erin"})), wantID: "erin"},
		{name: "configured claim missing", claim: "uid", token: good, wantErr: errTokenUserID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newHS256Verifier([]byte(testSecret), tt.issuer, tt.audience, tt.claim)
			gotID, err := v.Verify(tt.token, pinnedNow)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Verify = %q, %v; want error %v", gotID, err, tt.wantErr)
				}
				return
			}
			if err != nil || gotID != tt.wantID {
				t.Fatalf("Verify = %q, %v; want %q", gotID, err, tt.wantID)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSignRoundTrip(t *testing.T) {
	t.Parallel()
	v := newHS256Verifier([]byte(testSecret), "iss", "aud", "")
	token, err := v.Sign(map[string]any{"sub": "u1", "exp": pinnedNow.Add(time.Minute).Unix(), "iss": "iss", "aud": "aud"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v.Verify(token, pinnedNow); err != nil || got != "u1" {
		t.Fatalf("Verify(Sign(...)) = %q, %v; want u1", got, err)
	}
	if _, err := v.Sign(map[string]any{"bad": make(chan int)}); err == nil {
		t.Fatal("Sign of unencodable claims succeeded; want an error")
	}
}

// FuzzVerify: no input panics, and nothing is accepted that the secret did
// not sign with HS256 for a user id within the rules.
func FuzzVerify(f *testing.F) {
	now := pinnedNow.Unix()
	seeds := []string{
		rawToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":"a","exp":%d}`, now+60)),
		rawToken(testSecret, `{"alg":"none"}`, fmt.Sprintf(`{"sub":"a","exp":%d}`, now+60)),
		rawToken(testSecret, `{"alg":"HS256","crit":[]}`, `{"sub":"a"}`),
		rawToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":1,"exp":%d,"nbf":"x"}`, now)),
		"a.b.c", "..", "", "e30.e30.", strings.Repeat("A", 100),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	v := newHS256Verifier([]byte(testSecret), "", "", "")
	vectors := loadVectors(f)
	combined := &verifiers{hs256: v, jwks: &jwksVerifier{keys: staticKeys{}, rules: vectorRules(vectors.BaseURL)}}
	for _, vec := range vectors.Vectors {
		f.Add(vec.Token)
		if vec.Kind == "jwks" {
			keys, _, _ := parseJWKS(vec.JWKS)
			for kid, k := range keys {
				combined.jwks.keys.(staticKeys)[kid] = k
			}
		}
	}
	f.Fuzz(func(t *testing.T, token string) {
		// The JWKS path too: no panic, and nothing accepted that is not
		// an asymmetric token from a known key.
		if id, err := combined.Verify(token, pinnedNow); err == nil {
			p, perr := parseToken(token)
			if perr != nil || id == "" || (p.alg != "HS256" && !asymmetricAlgs[p.alg]) {
				t.Fatalf("combined verifier accepted %q (alg %q)", token, p.alg)
			}
		}
		userID, err := v.Verify(token, pinnedNow)
		if err != nil {
			if userID != "" {
				t.Fatalf("Verify returned user %q with error %v", userID, err)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token of %d segments", len(parts))
		}
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		if !bytes.Equal(sig, v.sign(parts[0]+"."+parts[1])) {
			t.Fatal("accepted a token whose signature does not match")
		}
		header, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var h map[string]any
		if json.Unmarshal(header, &h) != nil || h["alg"] != "HS256" || h["crit"] != nil {
			t.Fatalf("accepted header %s", header)
		}
		if userID == "" || len(userID) > maxUserIDBytes {
			t.Fatalf("accepted user id %q", userID)
		}
	})
}

// TestVerifyRefusesRewrittenText: a typ other than JWT, invalid UTF-8 and
// lone surrogates are refused rather than read as encoding/json would
// (all three ids below would otherwise be the same user "\ufffd").
func TestVerifyRefusesRewrittenText(t *testing.T) {
	t.Parallel()
	v := newHS256Verifier([]byte(testSecret), "", "", "")
	exp := strconv.FormatInt(pinnedNow.Unix()+60, 10)
	payload := func(sub string) string { return `{"sub":` + sub + `,"exp":` + exp + `}` }
	cases := []struct {
		name, header, payload string
		wantID                string
		wantErr               error
	}{
		{"typ JWT", `{"alg":"HS256","typ":"JWT"}`, payload(`"a"`), "a", nil},
		{"typ jwt lower case", `{"alg":"HS256","typ":"jwt"}`, payload(`"a"`), "a", nil},
		{"no typ", `{"alg":"HS256"}`, payload(`"a"`), "a", nil},
		{"typ at+jwt", `{"alg":"HS256","typ":"at+jwt"}`, payload(`"a"`), "", errTokenType},
		{"typ JWE", `{"alg":"HS256","typ":"JWE"}`, payload(`"a"`), "", errTokenType},
		{"typ Better Auth session cache", `{"alg":"HS256","typ":"better-auth.session-cache+jwt"}`, payload(`"a"`), "", errTokenType},
		{"typ not a string", `{"alg":"HS256","typ":1}`, payload(`"a"`), "", errTokenType},
		{"lone high surrogate", `{"alg":"HS256"}`, payload(`"\ud800"`), "", errTokenMalformed},
		{"lone low surrogate", `{"alg":"HS256"}`, payload(`"\udfff"`), "", errTokenMalformed},
		{"high surrogate then text", `{"alg":"HS256"}`, payload(`"\ud800x"`), "", errTokenMalformed},
		{"raw 0xFF byte", `{"alg":"HS256"}`, payload("\"\xff\""), "", errTokenMalformed},
		{"surrogate in the header", `{"alg":"HS256","x":"\udc00"}`, payload(`"a"`), "", errTokenMalformed},
		{"invalid UTF-8 in the header", "{\"alg\":\"HS256\",\"x\":\"\xc3\"}", payload(`"a"`), "", errTokenMalformed},
		{"a pair is one character", `{"alg":"HS256"}`, payload(`"\ud83d\ude00"`), "\U0001F600", nil},
		{"an escaped backslash before u", `{"alg":"HS256"}`, payload(`"\\ud800"`), `\ud800`, nil},
	}
	for _, c := range cases {
		got, err := v.Verify(rawToken(testSecret, c.header, c.payload), pinnedNow)
		if c.wantErr != nil {
			if !errors.Is(err, c.wantErr) {
				t.Errorf("%s: Verify = %q, %v; want %v", c.name, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.wantID {
			t.Errorf("%s: Verify = %q, %v; want %q", c.name, got, err, c.wantID)
		}
	}
}

// Verify is VerifyUntil without the time, for the tests.
func (v *hs256Verifier) Verify(token string, now time.Time) (string, error) {
	userID, _, err := v.VerifyUntil(token, now)
	return userID, err
}

// Verify is VerifyUntil without the time, for the tests.
func (v *verifiers) Verify(token string, now time.Time) (string, error) {
	userID, _, err := v.VerifyUntil(token, now)
	return userID, err
}
