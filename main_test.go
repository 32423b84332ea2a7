package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"
)

// The tests run against a real PostgreSQL named by DATABASE_URL. TestMain
// creates a fresh database in it for this run and drops it afterwards, so
// any server (a CI service container, make test's throwaway cluster) works.
var (
	testDSN   string // the run's own database
	testDB    *sql.DB
	testStore *Store
)

const testSecret = "test-secret-that-is-at-least-32-bytes-long"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	baseDSN := os.Getenv("DATABASE_URL")
	if baseDSN == "" {
		fmt.Fprintln(os.Stderr, "DATABASE_URL is not set: run `make test` (it starts a throwaway PostgreSQL), or set DATABASE_URL to a PostgreSQL where the tests may create a database")
		return 1
	}
	ctx := context.Background()
	admin, err := sql.Open("postgres", baseDSN)
	if err != nil {
		fmt.Fprintf(os.Stderr, "DATABASE_URL: %v\n", err)
		return 1
	}
	defer admin.Close()
	name := "todo_test_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		fmt.Fprintf(os.Stderr, "create test database (DATABASE_URL must allow CREATE DATABASE): %v\n", err)
		return 1
	}
	defer admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")

	testDSN = withDatabase(baseDSN, name)
	testDB, err = sql.Open("postgres", testDSN)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open test database: %v\n", err)
		return 1
	}
	defer testDB.Close()
	// Capped like the server's own pool, so parallel tests queue for
	// connections instead of exhausting the server's max_connections.
	testDB.SetMaxOpenConns(20)
	if err := applySchema(ctx, testDB); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if testStore, err = prepareStore(ctx, testDB); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer testStore.Close()
	return m.Run()
}

// withDatabase points a URL or key=value DSN at another database (in a
// key=value DSN, lib/pq lets a later key win).
func withDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			panic(err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// createDatabase makes an empty database for a test that needs one to itself.
func createDatabase(t *testing.T) string {
	t.Helper()
	name := "todo_test_" + randomHex(6)
	if _, err := testDB.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { testDB.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	return withDatabase(testDSN, name)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newUser returns a user id no other test uses.
func newUser(t *testing.T) string {
	t.Helper()
	return "user-" + randomHex(8)
}

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testConfig() config {
	cors, err := parseCORSOrigins("http://localhost:3000")
	if err != nil {
		panic(err)
	}
	return config{tokens: tokenSettings{secret: []byte(testSecret)}, cors: cors, dbTimeout: 5 * time.Second, logLevel: slog.LevelDebug}
}

// testServer is the real handler stack over the test database.
type testServer struct {
	*httptest.Server
	logs *syncBuffer
}

func newTestServer(t *testing.T, cfg config, store *Store) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: cfg.logLevel}))
	verifier := newHS256Verifier(cfg.tokens.secret, cfg.tokens.issuer, cfg.tokens.audience, cfg.tokens.userClaim)
	srv := httptest.NewServer(newServer(logger, store, verifier, cfg, newMetrics(store.PoolStats)))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, logs: logs}
}

func mustToken(t *testing.T, userID string) string {
	t.Helper()
	now := time.Now()
	token, err := newHS256Verifier([]byte(testSecret), "", "", "").Sign(map[string]any{
		"sub": userID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return token
}

// response is what a test reads of an answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// request sends one request; token "" sends no Authorization header.
func (s *testServer) request(t *testing.T, method, path, token string, body any, headers ...string) response {
	t.Helper()
	var reader io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		reader = strings.NewReader(b)
	case []byte:
		reader = bytes.NewReader(b)
	default:
		encoded, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		reader = bytes.NewReader(encoded)
	}
	req, err := http.NewRequest(method, s.URL+path, reader)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

// taskJSON is the wire form of a task, decoded strictly for assertions.
type taskJSON struct {
	ID          int64   `json:"id"`
	UserID      string  `json:"user_id"`
	Title       string  `json:"title"`
	Description *string `json:"description"`
	Completed   bool    `json:"completed"`
	CreatedAt   string  `json:"created_at"`
	UpdatedAt   string  `json:"updated_at"`
}

func decodeTask(t *testing.T, res response) taskJSON {
	t.Helper()
	var task taskJSON
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&task); err != nil {
		t.Fatalf("decode task from %s: %v", res, err)
	}
	return task
}

// sameTask compares two tasks by value, description included.
func sameTask(a, b taskJSON) bool {
	if (a.Description == nil) != (b.Description == nil) || (a.Description != nil && *a.Description != *b.Description) {
		return false
	}
	a.Description, b.Description = nil, nil
	return a == b
}

func decodeTasks(t *testing.T, res response) []taskJSON {
	t.Helper()
	var tasks []taskJSON
	if err := json.Unmarshal(res.body, &tasks); err != nil {
		t.Fatalf("decode task list from %s: %v", res, err)
	}
	return tasks
}

func mustCreate(t *testing.T, srv *testServer, token string, body any) taskJSON {
	t.Helper()
	res := srv.request(t, "POST", "/api/tasks", token, body)
	if res.status != http.StatusCreated {
		t.Fatalf("create = %s; want 201", res)
	}
	return decodeTask(t, res)
}

// wantError asserts the contract's error shape and code.
func wantError(t *testing.T, res response, status int, code string) {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %s; want %d %s", res, status, code)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(res.body, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", res.body, err)
	}
	if body["error_code"] != code {
		t.Errorf("error_code = %v; want %s (body %s)", body["error_code"], code, res.body)
	}
	if detail, ok := body["detail"].(string); !ok || detail == "" {
		t.Errorf("detail = %v; want a non-empty string", body["detail"])
	}
}

func taskPath(id int64) string { return "/api/tasks/" + strconv.FormatInt(id, 10) }

// tcpProxy stands between the server and PostgreSQL so a test can cut the
// database off and bring it back, as an outage would.
type tcpProxy struct {
	t        *testing.T
	target   func() (net.Conn, error)
	addr     string
	mu       sync.Mutex
	listener net.Listener
	conns    []net.Conn
}

// newTCPProxy starts a proxy to the server dsn names and returns it with a
// connector that reaches that server through it.
func newTCPProxy(t *testing.T, dsn string) (*tcpProxy, *pq.Connector) {
	t.Helper()
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	network, address := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, address = "unix", fmt.Sprintf("%s/.s.PGSQL.%d", cfg.Host, cfg.Port)
	}
	p := &tcpProxy{t: t, target: func() (net.Conn, error) { return net.Dial(network, address) }}
	p.start("127.0.0.1:0")
	t.Cleanup(p.stop)
	host, port, _ := net.SplitHostPort(p.addr)
	portNumber, _ := strconv.Atoi(port)
	cfg.Host, cfg.Port = host, uint16(portNumber)
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		t.Fatalf("proxied connector: %v", err)
	}
	return p, connector
}

func (p *tcpProxy) start(addr string) {
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.listener, p.addr = listener, listener.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			client, err := listener.Accept()
			if err != nil {
				return
			}
			server, err := p.target()
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, client, server)
			p.mu.Unlock()
			go func() { io.Copy(server, client); server.Close() }()
			go func() { io.Copy(client, server); client.Close() }()
		}
	}()
}

// stop refuses new connections and cuts every open one.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listener != nil {
		p.listener.Close()
		p.listener = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restart listens again on the same address.
func (p *tcpProxy) restart() { p.start(p.addr) }

// newProxiedStore is a Store whose every connection goes through a proxy the
// test can cut; the store and pool close with the test.
func newProxiedStore(t *testing.T) (*tcpProxy, *Store, *sql.DB) {
	t.Helper()
	proxy, connector := newTCPProxy(t, testDSN)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	store, err := prepareStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return proxy, store, db
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// --- the token verifier ---------------------------------------------------

// pinnedNow is the clock every verifier test runs at.
var pinnedNow = time.Date(2026, 1, 18, 10, 0, 0, 0, time.UTC)

// rawToken signs any header and payload text with secret, so tests can
// build tokens the signer would never make.
func rawToken(secret, header, payload string) string {
	v := newHS256Verifier([]byte(secret), "", "", "")
	input := b64(header) + "." + b64(payload)
	return input + "." + base64.RawURLEncoding.EncodeToString(v.sign(input))
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
	with := func(extra map[string]any, drop ...string) map[string]any {
		c := map[string]any{}
		for k, v := range valid {
			c[k] = v
		}
		for _, k := range drop {
			delete(c, k)
		}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
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
		{name: "exp missing", token: sign(with(nil, "exp")), wantErr: errTokenMissingExp},
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
	data, err := os.ReadFile("testdata/jwt/vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var vectors jwtVectors
	if err := json.Unmarshal(data, &vectors); err != nil {
		f.Fatal(err)
	}
	combined := &verifiers{hs256: v, jwks: &jwksVerifier{keys: staticKeys{}, rules: claimRules{issuer: vectors.BaseURL, audience: vectors.BaseURL, userClaims: []string{"sub"}}}}
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

// --- authentication --------------------------------------------------------

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	expired, err := newHS256Verifier([]byte(testSecret), "", "", "").Sign(map[string]any{"sub": "u", "exp": time.Now().Add(-time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	valid := mustToken(t, newUser(t))
	tests := []struct {
		name    string
		method  string
		path    string
		headers []string
		body    any
	}{
		{"no header", "GET", "/api/tasks", nil, nil},
		{"no header, bad body", "POST", "/api/tasks", nil, "{not json"},
		{"no header, huge body", "POST", "/api/tasks", nil, strings.Repeat("x", maxBodyBytes+10)},
		{"no header, unknown api path", "GET", "/api/nothing-here", nil, nil},
		{"no header, wrong method", "DELETE", "/api/tasks", nil, nil},
		{"no header, bad id", "GET", "/api/tasks/abc", nil, nil},
		{"basic scheme", "GET", "/api/tasks", []string{"Authorization", "Basic dXNlcjpwYXNz"}, nil},
		{"bearer without token", "GET", "/api/tasks", []string{"Authorization", "Bearer"}, nil},
		{"bearer with blank token", "GET", "/api/tasks", []string{"Authorization", "Bearer   "}, nil},
		{"token without scheme", "GET", "/api/tasks", []string{"Authorization", valid}, nil},
		{"two authorization headers", "GET", "/api/tasks", []string{"Authorization", "Bearer " + valid, "Authorization", "Bearer " + valid}, nil},
		{"token with inner space", "GET", "/api/tasks", []string{"Authorization", "Bearer " + valid + " extra"}, nil},
		{"forged", "GET", "/api/tasks", []string{"Authorization", "Bearer " + rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)}, nil},
		{"expired", "GET", "/api/tasks", []string{"Authorization", "Bearer " + expired}, nil},
		{"garbage", "GET", "/api/tasks/1", []string{"Authorization", "Bearer a.b.c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := srv.request(t, tt.method, tt.path, "", tt.body, tt.headers...)
			wantError(t, res, http.StatusUnauthorized, codeAuthenticationRequired)
			if got := res.header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q; want Bearer", got)
			}
		})
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		res := srv.request(t, "GET", "/api/tasks", "", nil, "Authorization", scheme+" "+token)
		if res.status != http.StatusOK {
			t.Errorf("scheme %q: %s; want 200", scheme, res)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", "", nil, "Authorization", "Bearer   "+token)
	if res.status != http.StatusOK {
		t.Errorf("extra spaces before the token: %s; want 200", res)
	}
}

func TestAuthFailureIsLoggedWithoutToken(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	forged := rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)
	srv.request(t, "GET", "/api/tasks", forged, nil)
	good := mustToken(t, newUser(t))
	srv.request(t, "GET", "/api/tasks", good, nil)
	logs := srv.logs.String()
	if !strings.Contains(logs, errTokenSignature.Error()) {
		t.Errorf("logs do not give the failure reason %q:\n%s", errTokenSignature, logs)
	}
	for _, secret := range []string{forged, good, strings.Split(good, ".")[2], testSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a token or the secret:\n%s", logs)
		}
	}
}

// --- the task endpoints ----------------------------------------------------

func TestTaskLifecycle(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)

	res := srv.request(t, "GET", "/api/tasks", token, nil)
	if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != "[]" {
		t.Fatalf("empty list = %s; want 200 []", res)
	}

	res = srv.request(t, "POST", "/api/tasks", token, map[string]any{
		"title": "  Buy milk \n", "id": 999, "user_id": "someone-else", "created_at": "1999-01-01T00:00:00Z",
	})
	if res.status != http.StatusCreated {
		t.Fatalf("create = %s; want 201", res)
	}
	created := decodeTask(t, res)
	if got, want := res.header.Get("Location"), taskPath(created.ID); got != want {
		t.Errorf("Location = %q; want %q", got, want)
	}
	if created.Title != "Buy milk" || created.UserID != user || created.Completed || created.Description != nil {
		t.Errorf("created = %+v; want trimmed title, own user id, not completed, null description", created)
	}
	if created.ID == 999 || created.CreatedAt != created.UpdatedAt || strings.HasPrefix(created.CreatedAt, "1999") {
		t.Errorf("created = %+v; body's id/created_at must be ignored and updated_at equal created_at", created)
	}
	for _, ts := range []string{created.CreatedAt, created.UpdatedAt} {
		parsed, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2026-01-18T10:00:00.123456Z") {
			t.Errorf("timestamp %q is not RFC 3339 UTC with microseconds (%v)", ts, err)
		}
		if d := time.Since(parsed); d < -time.Minute || d > time.Minute {
			t.Errorf("timestamp %q is not now", ts)
		}
	}
	if !bytes.Contains(res.body, []byte(`"description":null`)) {
		t.Errorf("body %s; want description null", res.body)
	}

	res = srv.request(t, "GET", taskPath(created.ID), token, nil)
	if res.status != http.StatusOK || !sameTask(decodeTask(t, res), created) {
		t.Fatalf("get = %s; want 200 %+v", res, created)
	}

	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk", "description": "2 litres", "completed": true})
	if res.status != http.StatusOK {
		t.Fatalf("put = %s; want 200", res)
	}
	updated := decodeTask(t, res)
	if updated.Title != "Buy oat milk" || updated.Description == nil || *updated.Description != "2 litres" || !updated.Completed {
		t.Errorf("updated = %+v", updated)
	}
	if updated.CreatedAt != created.CreatedAt || updated.UpdatedAt <= created.UpdatedAt {
		t.Errorf("updated_at %s must move past %s with created_at kept", updated.UpdatedAt, created.UpdatedAt)
	}

	// Left out: kept. Explicit null: cleared.
	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk"})
	kept := decodeTask(t, res)
	if kept.Description == nil || *kept.Description != "2 litres" || !kept.Completed || kept.UpdatedAt <= updated.UpdatedAt {
		t.Errorf("put without description/completed = %+v; want them kept and updated_at moved", kept)
	}
	res = srv.request(t, "PUT", taskPath(created.ID), token, map[string]any{"title": "Buy oat milk", "description": nil, "completed": false})
	cleared := decodeTask(t, res)
	if cleared.Description != nil || cleared.Completed {
		t.Errorf("put with description null = %+v; want description cleared", cleared)
	}

	res = srv.request(t, "PATCH", taskPath(created.ID)+"/complete", token, map[string]any{"completed": true})
	completed := decodeTask(t, res)
	if res.status != http.StatusOK || !completed.Completed || completed.UpdatedAt <= cleared.UpdatedAt || completed.Title != "Buy oat milk" {
		t.Errorf("complete = %s; want completed with updated_at moved", res)
	}
	res = srv.request(t, "PATCH", taskPath(created.ID)+"/complete", token, map[string]any{"completed": false})
	if decodeTask(t, res).Completed {
		t.Errorf("un-complete = %s; want completed false", res)
	}

	res = srv.request(t, "DELETE", taskPath(created.ID), token, nil)
	if res.status != http.StatusNoContent || len(res.body) != 0 {
		t.Fatalf("delete = %s; want 204 with no body", res)
	}
	wantError(t, srv.request(t, "DELETE", taskPath(created.ID), token, nil), http.StatusNotFound, codeNotFound)
	wantError(t, srv.request(t, "GET", taskPath(created.ID), token, nil), http.StatusNotFound, codeNotFound)
}

func TestCreateWithAllFields(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	desc := "line one\nline \"two\" \\ tab\t and \u2028 émoji 🎉 and control \x01"
	task := mustCreate(t, srv, token, map[string]any{"title": "Ünïcode ✓", "description": desc, "completed": true})
	if task.Title != "Ünïcode ✓" || task.Description == nil || *task.Description != desc || !task.Completed {
		t.Fatalf("created = %+v; want every field as sent", task)
	}
	empty := mustCreate(t, srv, token, map[string]any{"title": "x", "description": ""})
	if empty.Description == nil || *empty.Description != "" {
		t.Fatalf("empty description = %v; want \"\" kept apart from null", empty.Description)
	}
}

func TestListOrderFilterAndPaging(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	var ids []int64
	for i := 0; i < 5; i++ {
		task := mustCreate(t, srv, token, map[string]any{"title": fmt.Sprintf("task %d", i), "completed": i%2 == 0})
		ids = append(ids, task.ID)
	}
	listIDs := func(query string) []int64 {
		t.Helper()
		res := srv.request(t, "GET", "/api/tasks"+query, token, nil)
		if res.status != http.StatusOK {
			t.Fatalf("list%s = %s; want 200", query, res)
		}
		var got []int64
		for _, task := range decodeTasks(t, res) {
			got = append(got, task.ID)
		}
		return got
	}
	wantIDs := func(query string, want ...int64) {
		t.Helper()
		if got := listIDs(query); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("list%s ids = %v; want %v", query, got, want)
		}
	}
	wantIDs("", ids[4], ids[3], ids[2], ids[1], ids[0])
	wantIDs("/", ids[4], ids[3], ids[2], ids[1], ids[0])
	wantIDs("?completed=true", ids[4], ids[2], ids[0])
	wantIDs("?completed=false", ids[3], ids[1])
	wantIDs("?limit=2", ids[4], ids[3])
	wantIDs("?limit=2&offset=2", ids[2], ids[1])
	wantIDs("?offset=4", ids[0])
	wantIDs("?offset=5")
	wantIDs("?limit=1000&offset=0", ids[4], ids[3], ids[2], ids[1], ids[0])
	wantIDs("?completed=true&limit=1&offset=1", ids[2])
	wantIDs("?unknown=1", ids[4], ids[3], ids[2], ids[1], ids[0])

	for _, query := range []string{
		"?completed=yes", "?completed=1", "?completed=", "?completed=TRUE", "?limit=0", "?limit=1001", "?limit=-1",
		"?limit=abc", "?limit=", "?offset=-1", "?offset=x", "?limit=1&limit=2", "?offset=99999999999999999999",
	} {
		wantError(t, srv.request(t, "GET", "/api/tasks"+query, token, nil), http.StatusUnprocessableEntity, codeValidation)
	}
}

func TestListSameCreatedAtOrdersByID(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	// One statement: both rows get the same now().
	var first, second int64
	err := testDB.QueryRow(`WITH ins AS (INSERT INTO tasks (user_id, title) VALUES ($1, 'a'), ($1, 'b') RETURNING id)
		SELECT min(id), max(id) FROM ins`, user).Scan(&first, &second)
	if err != nil {
		t.Fatal(err)
	}
	tasks := decodeTasks(t, srv.request(t, "GET", "/api/tasks", mustToken(t, user), nil))
	if len(tasks) != 2 || tasks[0].ID != second || tasks[1].ID != first || tasks[0].CreatedAt != tasks[1].CreatedAt {
		t.Fatalf("list = %+v; want id %d then %d with equal created_at", tasks, second, first)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	existing := mustCreate(t, srv, token, map[string]any{"title": "keep me", "description": "d"})

	bad := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"empty body", "", 400, codeBadRequest, ""},
		{"truncated", `{"title": "a"`, 400, codeBadRequest, ""},
		{"trailing garbage", `{"title": "a"} x`, 400, codeBadRequest, ""},
		{"two objects", `{"title": "a"}{"title": "b"}`, 400, codeBadRequest, ""},
		{"not JSON", `title=a`, 400, codeBadRequest, ""},
		{"invalid UTF-8", []byte("{\"title\": \"a\xff\"}"), 400, codeBadRequest, ""},
		{"array", `[{"title": "a"}]`, 422, codeValidation, ""},
		{"null", `null`, 422, codeValidation, ""},
		{"string", `"a"`, 422, codeValidation, ""},
		{"number", `7`, 422, codeValidation, ""},
		{"no title", `{}`, 422, codeValidation, "title"},
		{"title null", `{"title": null}`, 422, codeValidation, "title"},
		{"title number", `{"title": 5}`, 422, codeValidation, "title"},
		{"title object", `{"title": {"a": 1}}`, 422, codeValidation, "title"},
		{"title empty", `{"title": ""}`, 422, codeValidation, "title"},
		{"title blank", `{"title": " \t\n\u00a0 "}`, 422, codeValidation, "title"},
		{"title 256 ascii", map[string]any{"title": strings.Repeat("a", 256)}, 422, codeValidation, "title"},
		{"title 256 multi-byte", map[string]any{"title": strings.Repeat("é", 256)}, 422, codeValidation, "title"},
		{"title 256 emoji", map[string]any{"title": strings.Repeat("🎉", 256)}, 422, codeValidation, "title"},
		{"title NUL", `{"title": "a\u0000b"}`, 422, codeValidation, "title"},
		{"description NUL", `{"title": "a", "description": "x\u0000"}`, 422, codeValidation, "description"},
		{"description number", `{"title": "a", "description": 1}`, 422, codeValidation, "description"},
		{"description array", `{"title": "a", "description": ["x"]}`, 422, codeValidation, "description"},
		{"completed string", `{"title": "a", "completed": "true"}`, 422, codeValidation, "completed"},
		{"completed number", `{"title": "a", "completed": 1}`, 422, codeValidation, "completed"},
		{"completed null", `{"title": "a", "completed": null}`, 422, codeValidation, "completed"},
		{"title key case", `{"Title": "a"}`, 422, codeValidation, "title"},
	}
	for _, tt := range bad {
		for _, target := range []struct{ method, path string }{{"POST", "/api/tasks"}, {"PUT", taskPath(existing.ID)}} {
			t.Run(target.method+" "+tt.name, func(t *testing.T) {
				res := srv.request(t, target.method, target.path, token, tt.body)
				wantError(t, res, tt.status, tt.code)
				if tt.field != "" {
					var body errorBody
					if err := json.Unmarshal(res.body, &body); err != nil || len(body.Errors) == 0 || body.Errors[0].Field != tt.field {
						t.Errorf("errors = %s; want field %q named", res.body, tt.field)
					}
				}
			})
		}
	}

	// Several broken rules are reported together.
	res := srv.request(t, "POST", "/api/tasks", token, `{"title": 1, "description": 2, "completed": "x"}`)
	var body errorBody
	if err := json.Unmarshal(res.body, &body); err != nil || len(body.Errors) != 3 {
		t.Errorf("three broken rules: %s; want three errors", res.body)
	}

	good := []struct {
		name  string
		title string
	}{
		{"255 ascii", strings.Repeat("a", 255)},
		{"255 multi-byte", strings.Repeat("é", 255)},
		{"255 emoji", strings.Repeat("🎉", 255)},
		{"255 after trimming", "  " + strings.Repeat("b", 255) + "  "},
	}
	for _, tt := range good {
		t.Run("accepts "+tt.name, func(t *testing.T) {
			task := mustCreate(t, srv, token, map[string]any{"title": tt.title})
			if task.Title != strings.TrimSpace(tt.title) {
				t.Errorf("title = %q; want %q", task.Title, strings.TrimSpace(tt.title))
			}
		})
	}

	// None of the rejected PUTs changed the row.
	res = srv.request(t, "GET", taskPath(existing.ID), token, nil)
	if !sameTask(decodeTask(t, res), existing) {
		t.Errorf("after rejected PUTs = %s; want unchanged %+v", res, existing)
	}
}

func TestCompleteValidation(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})
	path := taskPath(task.ID) + "/complete"
	for _, body := range []string{`{}`, `{"completed": null}`, `{"completed": "true"}`, `{"completed": 1}`, `[]`, `{"done": true}`} {
		wantError(t, srv.request(t, "PATCH", path, token, body), http.StatusUnprocessableEntity, codeValidation)
	}
	for _, body := range []string{``, `{"completed": true`, `{"completed": true} {}`} {
		wantError(t, srv.request(t, "PATCH", path, token, body), http.StatusBadRequest, codeBadRequest)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); !sameTask(got, task) {
		t.Errorf("after rejected PATCHes = %+v; want unchanged %+v", got, task)
	}
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	huge := `{"title": "a", "description": "` + strings.Repeat("x", maxBodyBytes) + `"}`
	wantError(t, srv.request(t, "POST", "/api/tasks", token, huge), http.StatusRequestEntityTooLarge, codePayloadTooLarge)

	// Without a Content-Length the limit still holds while reading.
	req, err := http.NewRequest("POST", srv.URL+"/api/tasks", io.MultiReader(strings.NewReader(huge)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked huge body: status %d; want 413", res.StatusCode)
	}

	// Just under the limit is fine.
	fits := `{"title": "a", "description": "` + strings.Repeat("y", maxBodyBytes-100) + `"}`
	task := mustCreate(t, srv, token, fits)
	if task.Description == nil || len(*task.Description) != maxBodyBytes-100 {
		t.Errorf("description of %d bytes not stored whole", maxBodyBytes-100)
	}
}

func TestTaskIDs(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})
	for _, id := range []string{
		"0", "-1", "abc", "1.5", "+1", "01", "9223372036854775808", "99999999999999999999999",
		"9223372036854775807", " 1", "1e3", "%00", "0x10",
	} {
		path := "/api/tasks/" + id
		wantError(t, srv.request(t, "GET", path, token, nil), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "PUT", path, token, map[string]any{"title": "b"}), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}), http.StatusNotFound, codeNotFound)
		wantError(t, srv.request(t, "DELETE", path, token, nil), http.StatusNotFound, codeNotFound)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); !sameTask(got, task) {
		t.Errorf("task changed: %+v; want %+v", got, task)
	}
}

// TestTwoUsers: for every operation, another user's task is exactly as
// missing as a task that never existed, and stays untouched.
func TestTwoUsers(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	alice, bob := mustToken(t, newUser(t)), mustToken(t, newUser(t))
	task := mustCreate(t, srv, alice, map[string]any{"title": "alice's", "description": "private"})
	missing := taskPath(task.ID + 1_000_000_000)

	ops := []struct {
		name   string
		method string
		suffix string
		body   any
	}{
		{"get", "GET", "", nil},
		{"put", "PUT", "", map[string]any{"title": "bob was here"}},
		{"complete", "PATCH", "/complete", map[string]any{"completed": true}},
		{"delete", "DELETE", "", nil},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			other := srv.request(t, op.method, taskPath(task.ID)+op.suffix, bob, op.body)
			never := srv.request(t, op.method, missing+op.suffix, bob, op.body)
			wantError(t, other, http.StatusNotFound, codeNotFound)
			wantError(t, never, http.StatusNotFound, codeNotFound)
			if stripRequestID(other.body) != stripRequestID(never.body) {
				t.Errorf("another user's task answers %s; a missing one %s; want the same", other.body, never.body)
			}
		})
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", bob, nil)); len(list) != 0 {
		t.Errorf("bob's list = %+v; want empty", list)
	}
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), alice, nil)); !sameTask(got, task) {
		t.Errorf("alice's task after bob = %+v; want unchanged %+v", got, task)
	}
	// A user id in the body or the query is never used.
	res := srv.request(t, "GET", "/api/tasks?user_id="+task.UserID, bob, nil)
	if list := decodeTasks(t, res); len(list) != 0 {
		t.Errorf("bob listing with ?user_id=alice = %+v; want empty", list)
	}
	created := mustCreate(t, srv, bob, map[string]any{"title": "mine", "user_id": task.UserID})
	if created.UserID == task.UserID {
		t.Errorf("bob created a task owned by %q", created.UserID)
	}
}

func stripRequestID(body []byte) string {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return string(body)
	}
	delete(m, "request_id")
	b, _ := json.Marshal(m)
	return string(b)
}

func TestConcurrentWritesNeverFail(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "contended"})

	const workers = 16
	var wg sync.WaitGroup
	statuses := make(chan string, workers*3)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for _, r := range []struct {
				method, path string
				body         any
				want         int
			}{
				{"POST", "/api/tasks", map[string]any{"title": fmt.Sprintf("parallel %d", i)}, 201},
				{"PUT", taskPath(task.ID), map[string]any{"title": fmt.Sprintf("update %d", i), "completed": i%2 == 0}, 200},
				{"PATCH", taskPath(task.ID) + "/complete", map[string]any{"completed": i%2 == 1}, 200},
			} {
				res := srv.request(t, r.method, r.path, token, r.body)
				if res.status != r.want {
					statuses <- fmt.Sprintf("%s %s = %s", r.method, r.path, res)
				}
			}
		}(i)
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		t.Error(s)
	}
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil)); len(list) != workers+1 {
		t.Errorf("list has %d tasks; want %d", len(list), workers+1)
	}
}

// --- routing, errors, CORS, health ---------------------------------------

func TestRouting(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "a"})

	t.Run("trailing slash without redirect", func(t *testing.T) {
		for _, r := range []struct {
			method, path string
			body         any
			want         int
		}{
			{"GET", "/api/tasks/", nil, 200},
			{"POST", "/api/tasks/", map[string]any{"title": "b"}, 201},
			{"GET", taskPath(task.ID) + "/", nil, 200},
			{"PUT", taskPath(task.ID) + "/", map[string]any{"title": "c"}, 200},
			{"PATCH", taskPath(task.ID) + "/complete/", map[string]any{"completed": true}, 200},
			{"GET", "/healthz/", nil, 200},
		} {
			if res := srv.request(t, r.method, r.path, token, r.body); res.status != r.want {
				t.Errorf("%s %s = %s; want %d", r.method, r.path, res, r.want)
			}
		}
	})
	t.Run("unknown routes", func(t *testing.T) {
		for _, p := range []string{"/", "/nope", "/api", "/api/", "/api/nope", "/api/tasks/1/nope", "/api//tasks", "/api/tasks//", "/api/tasks/../tasks", "/healthz/x"} {
			wantError(t, srv.request(t, "GET", p, token, nil), http.StatusNotFound, codeNotFound)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		for _, r := range []struct{ method, path, allow string }{
			{"DELETE", "/api/tasks", "GET, HEAD, POST"},
			{"PUT", "/api/tasks", "GET, HEAD, POST"},
			{"POST", taskPath(task.ID), "DELETE, GET, HEAD, PUT"},
			{"GET", taskPath(task.ID) + "/complete", "PATCH"},
			{"POST", "/healthz", "GET, HEAD"},
		} {
			res := srv.request(t, r.method, r.path, token, nil)
			wantError(t, res, http.StatusMethodNotAllowed, codeMethodNotAllowed)
			if got := res.header.Get("Allow"); got != r.allow {
				t.Errorf("%s %s: Allow = %q; want %q", r.method, r.path, got, r.allow)
			}
		}
	})
	t.Run("head", func(t *testing.T) {
		if res := srv.request(t, "HEAD", "/api/tasks", token, nil); res.status != http.StatusOK {
			t.Errorf("HEAD /api/tasks = %s; want 200", res)
		}
	})
}

func TestHealth(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	for _, p := range []string{"/healthz", "/readyz"} {
		res := srv.request(t, "GET", p, "", nil)
		if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != `{"status":"ok"}` {
			t.Errorf("GET %s = %s; want 200 {\"status\":\"ok\"}", p, res)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	res := srv.request(t, "GET", "/api/tasks", token, nil, "X-Request-ID", "abc-123")
	if got := res.header.Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("X-Request-ID = %q; want the caller's abc-123 echoed", got)
	}
	if res.header.Get("Content-Type") != "application/json" || res.header.Get("X-Content-Type-Options") != "nosniff" || res.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers = %v; want JSON, nosniff, no-store", res.header)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("a", 65), "semi;colon"} {
		res := srv.request(t, "GET", "/api/nope", token, nil, "X-Request-ID", bad)
		id := res.header.Get("X-Request-ID")
		if id == "" || id == bad {
			t.Errorf("X-Request-ID %q: answered %q; want a fresh id", bad, id)
		}
		var body errorBody
		if json.Unmarshal(res.body, &body); body.RequestID != id {
			t.Errorf("error body request_id = %q; want %q", body.RequestID, id)
		}
	}
	if !strings.Contains(srv.logs.String(), `"request_id":"abc-123"`) {
		t.Errorf("log lines lack the request id:\n%s", srv.logs)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	var err error
	if cfg.cors, err = parseCORSOrigins("http://localhost:3000, https://app.example.com/"); err != nil {
		t.Fatal(err)
	}
	srv := newTestServer(t, cfg, testStore)
	token := mustToken(t, newUser(t))

	for _, r := range []struct {
		name, method, path, token string
		want                      int
	}{
		{"success", "GET", "/api/tasks", token, 200},
		{"401", "GET", "/api/tasks", "", 401},
		{"404", "GET", "/api/tasks/999999999999", token, 404},
		{"405", "DELETE", "/api/tasks", token, 405},
		{"422", "GET", "/api/tasks?limit=0", token, 422},
	} {
		for _, origin := range []string{"http://localhost:3000", "https://app.example.com"} {
			res := srv.request(t, r.method, r.path, r.token, nil, "Origin", origin)
			if res.status != r.want {
				t.Errorf("%s: status %d; want %d", r.name, res.status, r.want)
			}
			if res.header.Get("Access-Control-Allow-Origin") != origin || res.header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(strings.Join(res.header.Values("Vary"), ","), "Origin") {
				t.Errorf("%s from %s: headers %v; want the origin allowed with credentials and Vary: Origin", r.name, origin, res.header)
			}
		}
	}

	res := srv.request(t, "GET", "/api/tasks", token, nil, "Origin", "https://evil.example")
	for name := range res.header {
		if strings.HasPrefix(name, "Access-Control-Allow-") {
			t.Errorf("unlisted origin got %s", name)
		}
	}

	pre := srv.request(t, "OPTIONS", "/api/tasks/123/complete", "", nil,
		"Origin", "http://localhost:3000", "Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "authorization, content-type")
	if pre.status != http.StatusNoContent {
		t.Fatalf("preflight = %s; want 204 without a token", pre)
	}
	methods := pre.header.Get("Access-Control-Allow-Methods")
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		if !strings.Contains(methods, m) {
			t.Errorf("Allow-Methods %q lacks %s", methods, m)
		}
	}
	if h := strings.ToLower(pre.header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "authorization") || !strings.Contains(h, "content-type") {
		t.Errorf("Allow-Headers = %q; want Authorization and Content-Type", h)
	}
	if pre.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("preflight Allow-Origin = %q", pre.header.Get("Access-Control-Allow-Origin"))
	}
	evilPre := srv.request(t, "OPTIONS", "/api/tasks", "", nil, "Origin", "https://evil.example", "Access-Control-Request-Method", "GET")
	if evilPre.header.Get("Access-Control-Allow-Origin") != "" || evilPre.header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight from an unlisted origin got CORS headers %v", evilPre.header)
	}

	t.Run("wildcard", func(t *testing.T) {
		cfg := testConfig()
		cfg.cors, _ = parseCORSOrigins("*")
		srv := newTestServer(t, cfg, testStore)
		res := srv.request(t, "GET", "/api/tasks", "", nil, "Origin", "https://anywhere.example")
		if res.header.Get("Access-Control-Allow-Origin") != "*" || res.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("wildcard headers = %v; want * without credentials", res.header)
		}
	})
}

func TestParseCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"localhost:3000", "ftp://x.example", "http://x.example/path", ",", "http://", "https://a.example?x=1"} {
		if _, err := parseCORSOrigins(bad); err == nil {
			t.Errorf("parseCORSOrigins(%q) = nil error; want an error", bad)
		}
	}
	p, err := parseCORSOrigins(" http://a.example:8080 ,https://b.example/ ")
	if err != nil || !p.origins["http://a.example:8080"] || !p.origins["https://b.example"] || p.anyOrigin {
		t.Errorf("parseCORSOrigins = %+v, %v", p, err)
	}
}

func TestPanicIsContractError(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := &server{logger: slog.New(slog.NewJSONHandler(logs, nil))}
	cors, _ := parseCORSOrigins("http://localhost:3000")
	h := s.logRequests(cors.middleware(s.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom: secret internals")
	}))))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res := (&testServer{Server: srv}).request(t, "GET", "/api/tasks", "", nil, "Origin", "http://localhost:3000")
	wantError(t, res, http.StatusInternalServerError, codeInternal)
	if strings.Contains(string(res.body), "boom") || strings.Contains(string(res.body), "goroutine") {
		t.Errorf("500 body leaks the panic: %s", res.body)
	}
	if res.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("500 lacks CORS headers: %v", res.header)
	}
	if !strings.Contains(logs.String(), "boom: secret internals") || !strings.Contains(logs.String(), "stack") {
		t.Errorf("panic not logged with its stack:\n%s", logs)
	}
}

// --- the database ----------------------------------------------------------

func TestSchemaAppliesConcurrentlyAndIdempotently(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { errs <- applySchema(ctx, db) }()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent applySchema: %v", err)
		}
	}
	if _, err := db.Exec(`INSERT INTO tasks (user_id, title) VALUES ('u', 'kept')`); err != nil {
		t.Fatal(err)
	}
	if err := applySchema(ctx, db); err != nil {
		t.Fatalf("second applySchema: %v", err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM tasks`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows after re-applying the schema = %d, %v; want 1", n, err)
	}
	// The list order has its index and nothing redundant sits beside it.
	var indexes []string
	rows, err := db.Query(`SELECT indexdef FROM pg_indexes WHERE tablename = 'tasks' ORDER BY indexname`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			t.Fatal(err)
		}
		indexes = append(indexes, def)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(indexes, "\n")
	if len(indexes) != 2 || !strings.Contains(all, "(user_id, id)") || !strings.Contains(all, "(user_id, created_at DESC, id DESC)") {
		t.Errorf("indexes:\n%s\nwant the (user_id, id) key and the list index only", all)
	}
}

func TestSchemaRejectsBadRows(t *testing.T) {
	t.Parallel()
	for _, q := range []string{
		`INSERT INTO tasks (user_id, title) VALUES ('', 'x')`,
		`INSERT INTO tasks (user_id, title) VALUES ('u', '')`,
		`INSERT INTO tasks (user_id, title) VALUES (repeat('u', 256), 'x')`,
		`INSERT INTO tasks (user_id, title) VALUES ('u', repeat('é', 256))`,
		`INSERT INTO tasks (user_id, id, title) VALUES ('u', 1, 'x')`,
	} {
		if _, err := testDB.Exec(q); err == nil {
			t.Errorf("%s succeeded; want the schema to refuse it", q)
		}
	}
}

// TestDatabaseOutage cuts the connection to PostgreSQL: requests that need
// it answer 503 with Retry-After, health stays up, readiness goes down, and
// the server recovers on its own when the database is back.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	proxy, store, _ := newProxiedStore(t)
	cfg := testConfig()
	cfg.dbTimeout = 2 * time.Second
	srv := newTestServer(t, cfg, store)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "before the outage"})

	proxy.stop()
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/tasks", nil},
		{"POST", "/api/tasks", map[string]any{"title": "during"}},
		{"GET", taskPath(task.ID), nil},
		{"PUT", taskPath(task.ID), map[string]any{"title": "during"}},
		{"PATCH", taskPath(task.ID) + "/complete", map[string]any{"completed": true}},
		{"DELETE", taskPath(task.ID), nil},
		{"GET", "/readyz", nil},
	} {
		start := time.Now()
		res := srv.request(t, r.method, r.path, token, r.body)
		wantError(t, res, http.StatusServiceUnavailable, codeUnavailable)
		if r.path != "/readyz" && res.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: 503 without Retry-After", r.method, r.path)
		}
		if d := time.Since(start); d > cfg.dbTimeout+time.Second {
			t.Errorf("%s %s took %v; want at most the database deadline", r.method, r.path, d)
		}
	}
	if res := srv.request(t, "GET", "/healthz", "", nil); res.status != http.StatusOK {
		t.Errorf("healthz during outage = %s; want 200", res)
	}

	proxy.restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := srv.request(t, "GET", taskPath(task.ID), token, nil)
		if res.status == http.StatusOK {
			if got := decodeTask(t, res); !sameTask(got, task) {
				t.Errorf("after recovery = %+v; want %+v", got, task)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 5 s after the database came back: %s", res)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustCreate(t, srv, token, map[string]any{"title": "after the outage"})
}

// TestPoolQueueIsFirstComeFirstServed holds the pool's only connection and
// queues ten callers one after another: they must get it in that order
// (database/sql alone would pick a random waiter each time). A caller whose
// deadline passes in the queue gets a 503-class error and takes no place.
func TestPoolQueueIsFirstComeFirstServed(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("postgres", testDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	store, err := prepareStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	if err := store.enter(ctx); err != nil {
		t.Fatal(err)
	}

	shortCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = store.GetTask(shortCtx, "queue-user", 1)
	if !errors.Is(err, context.DeadlineExceeded) || !isUnavailable(err) {
		t.Fatalf("GetTask with the pool held past its deadline = %v; want a deadline error that maps to 503", err)
	}

	const callers = 10
	admitted := make(chan int, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := store.enter(ctx); err != nil {
				t.Error(err)
				return
			}
			admitted <- i
			store.leave()
		}()
		waitForWaiters(t, ".(*Store).enter", i+1)
	}
	store.leave()
	wg.Wait()
	close(admitted)
	next := 0
	for i := range admitted {
		if i != next {
			t.Fatalf("caller %d got the connection when caller %d was first in the queue", i, next)
		}
		next++
	}
	if next != callers {
		t.Fatalf("%d of %d callers were admitted", next, callers)
	}
	// Waits in the queue are what the pool's wait metrics report.
	if stats := store.PoolStats(); stats.WaitCount != callers+1 || stats.WaitDuration <= 0 {
		t.Errorf("PoolStats wait count %d, duration %v; want %d waits and some time", stats.WaitCount, stats.WaitDuration, callers+1)
	}
	// The timed-out caller left no place taken: the one connection serves.
	if _, err := store.GetTask(ctx, "queue-user", 1); !errors.Is(err, errNotFound) {
		t.Fatalf("GetTask after the queue drained = %v; want errNotFound", err)
	}
}

// waitForWaiters waits until n goroutines are blocked inside function.
func waitForWaiters(t *testing.T, function string, n int) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); ; {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if got := strings.Count(stacks, function+"("); got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines never all waited in %s", n, function)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStoreErrorMapping(t *testing.T) {
	t.Parallel()
	unavailable := []error{
		&pq.Error{Code: "08006"}, &pq.Error{Code: "57P01"}, &pq.Error{Code: "53300"},
		context.DeadlineExceeded, io.ErrUnexpectedEOF, fmt.Errorf("wrapped: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}),
	}
	for _, err := range unavailable {
		if !isUnavailable(err) {
			t.Errorf("isUnavailable(%v) = false; want true", err)
		}
	}
	for _, err := range []error{&pq.Error{Code: "23505"}, errors.New("sql: something else"), errNotFound} {
		if isUnavailable(err) {
			t.Errorf("isUnavailable(%v) = true; want false", err)
		}
	}

	// Anything unexpected is a 500 whose body carries no SQL or driver text.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/tasks", nil)
	writeError(rec, req, fmt.Errorf("list tasks: %w", &pq.Error{Code: "42P01", Message: `relation "tasks" does not exist`}))
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	wantError(t, res, http.StatusInternalServerError, codeInternal)
	if strings.Contains(string(res.body), "relation") || strings.Contains(string(res.body), "pq") {
		t.Errorf("500 body leaks the driver error: %s", res.body)
	}
}

// TestClientGoneCancelsQuery: a PUT blocks on a row another transaction
// holds; when its client goes away, the UPDATE must vanish from PostgreSQL
// while the lock is still held (cancelled, not finished), and change nothing.
func TestClientGoneCancelsQuery(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.dbTimeout = time.Minute // so only the client can end the wait
	srv := newTestServer(t, cfg, testStore)
	user := newUser(t)
	token := mustToken(t, user)
	task := mustCreate(t, srv, token, map[string]any{"title": "locked"})

	blocker, err := testDB.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback()
	if _, err := blocker.Exec(`SELECT 1 FROM tasks WHERE user_id = $1 AND id = $2 FOR UPDATE`, user, task.ID); err != nil {
		t.Fatal(err)
	}
	waiting := func() int {
		var n int
		err := testDB.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE tasks SET%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for waiting() != want {
			if time.Now().After(deadline) {
				t.Fatalf("blocked UPDATEs = %d; want %d", waiting(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "PUT", srv.URL+taskPath(task.ID), strings.NewReader(`{"title":"never"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	clientErr := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		clientErr <- err
	}()
	waitFor(1)
	cancel()
	if err := <-clientErr; err == nil {
		t.Fatal("the request finished although its row was locked")
	}
	waitFor(0) // cancelled in PostgreSQL while the lock is still held
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(srv.logs.String(), `"status":499`); {
		if time.Now().After(deadline) {
			t.Fatalf("no 499 logged for the abandoned request:\n%s", srv.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	blocker.Rollback()
	if got := decodeTask(t, srv.request(t, "GET", taskPath(task.ID), token, nil)); got.Title != "locked" {
		t.Fatalf("title = %q after a cancelled PUT; want it unchanged", got.Title)
	}
}

// --- the program -----------------------------------------------------------

func envFrom(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func baseEnv(overrides map[string]string) map[string]string {
	env := map[string]string{"DATABASE_URL": testDSN, "BETTER_AUTH_SECRET": testSecret, "PORT": "0", "DB_WAIT": "2s"}
	for k, v := range overrides {
		env[k] = v
	}
	return env
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		names string // the variable the one line must name
	}{
		{"no database", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL"},
		{"no secret", map[string]string{"BETTER_AUTH_SECRET": ""}, "BETTER_AUTH_SECRET"},
		{"short secret", map[string]string{"BETTER_AUTH_SECRET": strings.Repeat("s", 31)}, "BETTER_AUTH_SECRET"},
		{"port not a number", map[string]string{"PORT": "http"}, "PORT"},
		{"port too large", map[string]string{"PORT": "70000"}, "PORT"},
		{"bad log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"bad origin", map[string]string{"CORS_ORIGINS": "localhost:3000"}, "CORS_ORIGINS"},
		{"bad user claim", map[string]string{"JWT_USER_CLAIM": " sub"}, "JWT_USER_CLAIM"},
		{"bad db timeout", map[string]string{"DB_TIMEOUT": "soon"}, "DB_TIMEOUT"},
		{"negative db wait", map[string]string{"DB_WAIT": "-1s"}, "DB_WAIT"},
		{"bad shutdown timeout", map[string]string{"SHUTDOWN_TIMEOUT": "0"}, "SHUTDOWN_TIMEOUT"},
		{"bad pool size", map[string]string{"DB_MAX_CONNS": "0"}, "DB_MAX_CONNS"},
		{"bad metrics address", map[string]string{"METRICS_ADDR": "9090"}, "METRICS_ADDR"},
		{"bad rate", map[string]string{"RATE_LIMIT_RPS": "fast"}, "RATE_LIMIT_RPS"},
		{"bad burst", map[string]string{"RATE_LIMIT_BURST": "0"}, "RATE_LIMIT_BURST"},
		{"bad dsn", map[string]string{"DATABASE_URL": "postgres://user:hunter2@host:notaport/db"}, "DATABASE_URL"},
		{"unknown dsn key", map[string]string{"DATABASE_URL": "host=x sslmode=sometimes password=hunter2"}, "DATABASE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"todo-backend"}, envFrom(baseEnv(tt.env)), &stdout, &stderr)
			if err == nil {
				t.Fatal("run succeeded; want a configuration error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.names) || strings.Contains(msg, "\n") {
				t.Errorf("error %q; want one line naming %s", msg, tt.names)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q leaks the database password", msg)
			}
		})
	}
}

func TestLoadConfigDefaultsAndAliases(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envFrom(map[string]string{"NEON_DATABASE_URL": "host=neon", "BETTER_AUTH_SECRET": testSecret}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.databaseURL != "host=neon" || cfg.addr != ":8000" || !cfg.cors.origins["http://localhost:3000"] || cfg.logLevel != slog.LevelInfo ||
		cfg.dbTimeout != 5*time.Second || cfg.dbWait != 30*time.Second || cfg.shutdownTimeout != 15*time.Second || cfg.dbMaxConns != 8 {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = loadConfig(envFrom(map[string]string{
		"DATABASE_URL": "host=direct", "NEON_DATABASE_URL": "host=neon", "BETTER_AUTH_SECRET": testSecret,
		"LOG_LEVEL": "WARN", "PORT": "9000", "CORS_ORIGINS": "*", "DB_MAX_CONNS": "4", "JWT_USER_CLAIM": "uid",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.databaseURL != "host=direct" || cfg.logLevel != slog.LevelWarn || cfg.addr != ":9000" || !cfg.cors.anyOrigin || cfg.dbMaxConns != 4 || cfg.tokens.userClaim != "uid" {
		t.Errorf("DATABASE_URL must win over NEON_DATABASE_URL and settings apply: %+v", cfg)
	}
	for _, level := range []string{"debug", "error"} {
		if _, err := loadConfig(envFrom(map[string]string{"DATABASE_URL": "x", "BETTER_AUTH_SECRET": testSecret, "LOG_LEVEL": level})); err != nil {
			t.Errorf("LOG_LEVEL=%s: %v", level, err)
		}
	}
}

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := envFrom(map[string]string{"BETTER_AUTH_SECRET": testSecret, "JWT_ISSUER": "iss", "JWT_AUDIENCE": "aud", "JWT_USER_CLAIM": "uid"})
	if err := run(context.Background(), []string{"todo-backend", "token", "-ttl", "2m", "someone"}, env, &stdout, &stderr); err != nil {
		t.Fatalf("token: %v (%s)", err, stderr.String())
	}
	token := strings.TrimSpace(stdout.String())
	v := newHS256Verifier([]byte(testSecret), "iss", "aud", "uid")
	if got, err := v.Verify(token, time.Now()); err != nil || got != "someone" {
		t.Fatalf("Verify(token) = %q, %v; want someone", got, err)
	}
	if _, err := v.Verify(token, time.Now().Add(3*time.Minute)); !errors.Is(err, errTokenExpired) {
		t.Errorf("token valid past its -ttl: %v", err)
	}

	stdout.Reset()
	if err := run(context.Background(), []string{"todo-backend", "token", "a", "b", "c"}, env, &stdout, io.Discard); err != nil || strings.Count(stdout.String(), "\n") != 3 {
		t.Errorf("three user ids = %q, %v; want three lines", stdout.String(), err)
	}
	for _, args := range [][]string{{"token"}, {"token", "a", ""}, {"token", "-ttl", "-1h", "a"}, {"token", "-nope", "a"}, {"token", strings.Repeat("u", 256)}} {
		if err := run(context.Background(), append([]string{"todo-backend"}, args...), env, io.Discard, io.Discard); err == nil {
			t.Errorf("todo-backend %v succeeded; want an error", args)
		}
	}
	if err := run(context.Background(), []string{"todo-backend", "token", "u"}, envFrom(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "BETTER_AUTH_SECRET") {
		t.Errorf("token without a secret: %v; want an error naming BETTER_AUTH_SECRET", err)
	}
	if err := run(context.Background(), []string{"todo-backend", "serve"}, env, io.Discard, io.Discard); err == nil {
		t.Error("unknown argument accepted")
	}
	stdout.Reset()
	if err := run(context.Background(), []string{"todo-backend", "-version"}, env, &stdout, io.Discard); err != nil || !strings.Contains(stdout.String(), version) {
		t.Errorf("-version = %q, %v", stdout.String(), err)
	}
}

// startProgram runs the real program in the background and returns its
// base URL; cancelling stops it, and the returned channel gives run's error.
func startProgram(t *testing.T, env map[string]string) (string, context.CancelFunc, <-chan error, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"todo-backend"}, envFrom(env), io.Discard, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				_, port, _ := net.SplitHostPort(entry.Addr)
				return "http://127.0.0.1:" + port, cancel, done, logs
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("run ended during start-up: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	t.Fatalf("server did not start:\n%s", logs)
	return "", nil, nil, nil
}

func TestRunServesAndDrains(t *testing.T) {
	t.Parallel()
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"LOG_LEVEL": "debug"}))
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "through the real program"})
	if res := srv.request(t, "GET", taskPath(task.ID), token, nil); res.status != http.StatusOK {
		t.Fatalf("get = %s", res)
	}
	if res := srv.request(t, "GET", "/readyz", "", nil); res.status != http.StatusOK {
		t.Fatalf("readyz = %s", res)
	}

	// A request in flight when the signal comes is finished, not cut: its
	// headers arrive before the signal and its body after.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"title":"in flight"}`
	fmt.Fprintf(conn, "POST /api/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", token, len(body))
	time.Sleep(100 * time.Millisecond)
	stop()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("run returned %v with a request in flight", err)
	default:
	}
	io.WriteString(conn, body)
	inFlight, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	inFlight.Body.Close()
	if inFlight.StatusCode != http.StatusCreated {
		t.Errorf("in-flight request during shutdown = %d; want 201", inFlight.StatusCode)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after shutdown = %v; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
	for _, want := range []string{`"msg":"request"`, `"method":"POST"`, `"status":201`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), testSecret) {
		t.Error("logs contain the token or the secret")
	}
}

func TestRunWaitsForDatabaseThenGivesUp(t *testing.T) {
	t.Parallel()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().(*net.TCPAddr)
	listener.Close() // nothing listens there now
	var stderr syncBuffer
	env := baseEnv(map[string]string{
		"DATABASE_URL": fmt.Sprintf("postgres://todo:hunter2@127.0.0.1:%d/todo?sslmode=disable", addr.Port),
		"DB_WAIT":      "1s",
	})
	start := time.Now()
	err = run(context.Background(), []string{"todo-backend"}, envFrom(env), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "database not reachable") {
		t.Fatalf("run = %v; want 'database not reachable'", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("gave up after %v; want about DB_WAIT", d)
	}
	if !strings.Contains(stderr.String(), "retrying") {
		t.Errorf("no retry logged:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String()+err.Error(), "hunter2") {
		t.Error("the database password reached the log or the error")
	}
}

func TestRunFailsFastOnWrongDatabase(t *testing.T) {
	t.Parallel()
	env := baseEnv(map[string]string{"DATABASE_URL": withDatabase(testDSN, "no_such_database_"+randomHex(4)), "DB_WAIT": "30s"})
	start := time.Now()
	err := run(context.Background(), []string{"todo-backend"}, envFrom(env), io.Discard, io.Discard)
	if err == nil {
		t.Fatal("run against a missing database succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; an error that waiting cannot fix should not wait for DB_WAIT", d)
	}
}

// --- decoding and encoding -------------------------------------------------

func TestTimestamps(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want string
	}{
		{"2026-01-18 10:00:00.123456+00", "2026-01-18T10:00:00.123456Z"},
		{"2026-01-18 10:00:00+00", "2026-01-18T10:00:00.000000Z"},
		{"2026-01-18 10:00:00.1+00", "2026-01-18T10:00:00.100000Z"},
		{"2026-01-18 12:30:00.5+02:30", "2026-01-18T10:00:00.500000Z"},
		{"2026-01-18 05:00:00-05", "2026-01-18T10:00:00.000000Z"},
		{"2026-01-01 00:20:15-09:39:45", "2026-01-01T10:00:00.000000Z"},
		{"2024-02-29 23:59:59.999999+00", "2024-02-29T23:59:59.999999Z"},
	} {
		got, ok := parsePGTimestamp(tt.in)
		if !ok {
			t.Errorf("parsePGTimestamp(%q) failed", tt.in)
			continue
		}
		if s := string(appendTimestamp(nil, got)); s != tt.want {
			t.Errorf("parsePGTimestamp(%q) = %s; want %s", tt.in, s, tt.want)
		}
		if s := string(appendTimestamp(nil, got)); s != got.UTC().Format(timeLayout) {
			t.Errorf("appendTimestamp = %s; time.Format gives %s", s, got.UTC().Format(timeLayout))
		}
	}
	for _, bad := range []string{"", "2026-01-18", "2026-01-18T10:00:00Z", "2026-01-18 10:00:00", "2026-01-18 10:00:00+0", "2026-01-18 10:00:00+00:3", "2026-01-18 10:00:00 BC", "20x6-01-18 10:00:00+00", "2026-01-18 10:00:00+00;00"} {
		if got, ok := parsePGTimestamp(bad); ok {
			t.Errorf("parsePGTimestamp(%q) = %v; want a failure", bad, got)
		}
	}
	var scanned time.Time
	if err := (pgTimestamp{&scanned}).Scan([]byte("2026-01-18 10:00:00+00")); err != nil || !scanned.Equal(pinnedNow) {
		t.Errorf("Scan([]byte) = %v, %v", scanned, err)
	}
	if err := (pgTimestamp{&scanned}).Scan(42); err == nil {
		t.Error("Scan(42) succeeded")
	}
	if err := (pgTimestamp{&scanned}).Scan("yesterday"); err == nil {
		t.Error(`Scan("yesterday") succeeded`)
	}
	// Years outside 0..9999 fall back to the standard formatter.
	far := time.Date(12026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if got := string(appendTimestamp(nil, far)); got != far.Format(timeLayout) {
		t.Errorf("appendTimestamp(year 12026) = %s", got)
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `"quoted" \ back`, "ctl \x00\x01\x1f\x7f", "tab\tnl\ncr\r", "é🎉", "bad \xff\xfe utf8", "\u2028\u2029", "<&>"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Errorf("appendJSONString(%q) = %s is not JSON: %v", s, appendJSONString(nil, s), err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendJSONString(%q) decodes to %q; want %q", s, back, wantBack)
		}
	}
}

// FuzzDecodeTask: no body panics the decoder; whatever it accepts obeys
// every body rule, and the stored task encodes to JSON that decodes back.
func FuzzDecodeTask(f *testing.F) {
	for _, seed := range []string{
		`{"title":"a"}`, `{"title":" b ","description":null,"completed":true}`, `{"title":"` + strings.Repeat("é", 256) + `"}`,
		`{"title":"a\u0000"}`, `{"title":1}`, `[]`, `null`, ``, `{"title":"a"} x`, "{\"title\":\"\xff\"}", `{"completed":"true"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, err := decodeObject(body)
		if err != nil {
			var apiErr *apiError
			if !errors.As(err, &apiErr) || (statusOf[apiErr.code] != http.StatusBadRequest && statusOf[apiErr.code] != http.StatusUnprocessableEntity) {
				t.Fatalf("decodeObject(%q) = %v; want a 400 or 422", body, err)
			}
			return
		}
		fields, err := parseTaskFields(obj)
		if err != nil {
			return
		}
		if fields.title == "" || fields.title != strings.TrimSpace(fields.title) || utf8.RuneCountInString(fields.title) > maxTitleRunes ||
			strings.IndexByte(fields.title, 0) >= 0 || !utf8.ValidString(fields.title) {
			t.Fatalf("accepted title %q", fields.title)
		}
		if fields.description != nil && strings.IndexByte(*fields.description, 0) >= 0 {
			t.Fatalf("accepted description with NUL")
		}
		task := Task{ID: 1, UserID: "u", Title: fields.title, Description: fields.description, CreatedAt: pinnedNow, UpdatedAt: pinnedNow}
		var back taskJSON
		if err := json.Unmarshal(task.appendJSON(nil), &back); err != nil || back.Title != fields.title {
			t.Fatalf("task JSON does not round-trip: %v", err)
		}
	})
}

// --- ETags, conditional writes, idempotent create --------------------------

func TestETagsAndConditionalRequests(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "tagged"})
	task := decodeTask(t, res)
	path := taskPath(task.ID)
	if got := res.header.Get("ETag"); got != `"v1"` {
		t.Fatalf("POST ETag = %q; want \"v1\"", got)
	}
	get := srv.request(t, "GET", path, token, nil)
	if get.header.Get("ETag") != `"v1"` {
		t.Fatalf("GET ETag = %q", get.header.Get("ETag"))
	}

	t.Run("If-None-Match", func(t *testing.T) {
		for _, header := range []string{`"v1"`, `W/"v1"`, `*`, `"v7", "v1"`, ` "x" ,"v1"`} {
			res := srv.request(t, "GET", path, token, nil, "If-None-Match", header)
			if res.status != http.StatusNotModified || len(res.body) != 0 || res.header.Get("ETag") != `"v1"` {
				t.Errorf("If-None-Match %s = %s; want 304, no body, the ETag", header, res)
			}
		}
		for _, header := range []string{`"v2"`, `v1`, `"1"`, `""`} {
			if res := srv.request(t, "GET", path, token, nil, "If-None-Match", header); res.status != http.StatusOK {
				t.Errorf("If-None-Match %s = %s; want 200", header, res)
			}
		}
	})

	t.Run("If-Match mismatch changes nothing", func(t *testing.T) {
		for _, header := range []string{`"v2"`, `W/"v1"`, `garbage`, `"v0"`} {
			wantError(t, srv.request(t, "PUT", path, token, map[string]any{"title": "changed"}, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
			wantError(t, srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
			wantError(t, srv.request(t, "DELETE", path, token, nil, "If-Match", header), http.StatusPreconditionFailed, codePreconditionFailed)
		}
		if got := decodeTask(t, srv.request(t, "GET", path, token, nil)); !sameTask(got, task) {
			t.Fatalf("after 412s = %+v; want unchanged %+v", got, task)
		}
	})

	t.Run("If-Match match writes and moves the ETag", func(t *testing.T) {
		res := srv.request(t, "PUT", path, token, map[string]any{"title": "v2"}, "If-Match", `"v1"`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v2"` {
			t.Fatalf("PUT If-Match v1 = %s ETag %q; want 200 \"v2\"", res, res.header.Get("ETag"))
		}
		res = srv.request(t, "PATCH", path+"/complete", token, map[string]any{"completed": true}, "If-Match", `"v9", "v2"`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v3"` {
			t.Fatalf("PATCH If-Match list = %s ETag %q; want 200 \"v3\"", res, res.header.Get("ETag"))
		}
		res = srv.request(t, "PUT", path, token, map[string]any{"title": "v4"}, "If-Match", `*`)
		if res.status != http.StatusOK || res.header.Get("ETag") != `"v4"` {
			t.Fatalf("PUT If-Match * = %s; want 200", res)
		}
		// Without If-Match, writes are unconditional as before.
		if res := srv.request(t, "PUT", path, token, map[string]any{"title": "v5"}); res.status != http.StatusOK || res.header.Get("ETag") != `"v5"` {
			t.Fatalf("PUT without If-Match = %s", res)
		}
		if res := srv.request(t, "DELETE", path, token, nil, "If-Match", `"v5"`); res.status != http.StatusNoContent {
			t.Fatalf("DELETE If-Match v5 = %s; want 204", res)
		}
	})

	t.Run("missing or another user's task is 404 not 412", func(t *testing.T) {
		other := mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "not yours"})
		for _, p := range []string{path, taskPath(other.ID)} {
			wantError(t, srv.request(t, "PUT", p, token, map[string]any{"title": "x"}, "If-Match", `"v1"`), http.StatusNotFound, codeNotFound)
			wantError(t, srv.request(t, "DELETE", p, token, nil, "If-Match", `"v1"`), http.StatusNotFound, codeNotFound)
			wantError(t, srv.request(t, "GET", p, token, nil, "If-None-Match", `*`), http.StatusNotFound, codeNotFound)
		}
	})
}

func TestRacingIfMatchWritersOneWins(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "contended"})
	const writers = 12
	statuses := make(chan int, writers)
	var start sync.WaitGroup
	start.Add(1)
	var done sync.WaitGroup
	for i := 0; i < writers; i++ {
		done.Add(1)
		go func(i int) {
			defer done.Done()
			start.Wait()
			var res response
			if i%2 == 0 {
				res = srv.request(t, "PUT", taskPath(task.ID), token, map[string]any{"title": fmt.Sprintf("writer %d", i)}, "If-Match", `"v1"`)
			} else {
				res = srv.request(t, "PATCH", taskPath(task.ID)+"/complete", token, map[string]any{"completed": true}, "If-Match", `"v1"`)
			}
			statuses <- res.status
		}(i)
	}
	start.Done()
	done.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[200] != 1 || counts[412] != writers-1 {
		t.Fatalf("statuses = %v; want exactly one 200 and %d 412", counts, writers-1)
	}
	res := srv.request(t, "GET", taskPath(task.ID), token, nil)
	if res.header.Get("ETag") != `"v2"` {
		t.Fatalf("final ETag %q; want \"v2\" (one write)", res.header.Get("ETag"))
	}
}

func countTasks(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := testDB.QueryRow(`SELECT count(*) FROM tasks WHERE user_id = $1`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	body := map[string]any{"title": "once", "description": "only once"}

	first := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1")
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first POST = %s; want 201, not a replay", first)
	}
	created := decodeTask(t, first)

	replay := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1")
	if replay.status != http.StatusCreated || replay.header.Get("Idempotent-Replayed") != "true" ||
		!bytes.Equal(replay.body, first.body) || replay.header.Get("Location") != first.header.Get("Location") || replay.header.Get("ETag") != `"v1"` {
		t.Fatalf("replay = %s %v; want the original 201 byte for byte", replay, replay.header)
	}
	// Same meaning, other spelling: still the same request.
	same := srv.request(t, "POST", "/api/tasks", token, `{"description":"only once",  "title":" once ","completed":false}`, "Idempotency-Key", "key-1")
	if same.status != http.StatusCreated || decodeTask(t, same).ID != created.ID {
		t.Fatalf("equivalent body = %s; want the original task", same)
	}
	// The replay stands even after the task changes or goes away.
	srv.request(t, "DELETE", taskPath(created.ID), token, nil)
	if again := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", "key-1"); !bytes.Equal(again.body, first.body) {
		t.Fatalf("replay after delete = %s; want the original answer", again)
	}

	res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "different"}, "Idempotency-Key", "key-1")
	wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
	if !strings.Contains(string(res.body), "Idempotency-Key") {
		t.Errorf("mismatch body %s; want it to name the key", res.body)
	}
	if n := countTasks(t, user); n != 0 {
		t.Fatalf("user has %d tasks; want 0 (one created, then deleted; nothing else)", n)
	}

	// Keys are per user.
	otherUser := newUser(t)
	other := srv.request(t, "POST", "/api/tasks", mustToken(t, otherUser), body, "Idempotency-Key", "key-1")
	if other.status != http.StatusCreated || other.header.Get("Idempotent-Replayed") != "" || decodeTask(t, other).ID == created.ID {
		t.Fatalf("other user's POST with the same key = %s; want a task of their own", other)
	}

	// After 24 hours the key is forgotten.
	if _, err := testDB.Exec(`UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	fresh := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "different"}, "Idempotency-Key", "key-1")
	if fresh.status != http.StatusCreated || fresh.header.Get("Idempotent-Replayed") != "" || decodeTask(t, fresh).ID == created.ID {
		t.Fatalf("POST with an expired key = %s; want a new task", fresh)
	}

	for _, bad := range [][]string{
		{"Idempotency-Key", ""},
		{"Idempotency-Key", strings.Repeat("k", 256)},
		{"Idempotency-Key", "has space"},
		{"Idempotency-Key", "caf\u00e9"},
		{"Idempotency-Key", "a", "Idempotency-Key", "b"},
	} {
		res := srv.request(t, "POST", "/api/tasks", token, body, bad...)
		wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
	}
	if res := srv.request(t, "POST", "/api/tasks", token, body, "Idempotency-Key", strings.Repeat("k", 255)); res.status != http.StatusCreated {
		t.Errorf("255-character key = %s; want 201", res)
	}
}

func TestIdempotentCreateConcurrent(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	const requests = 100
	ids := make(chan string, requests)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < requests; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "exactly one"}, "Idempotency-Key", "retry-storm")
			if res.status != http.StatusCreated {
				ids <- "status " + res.String()
				return
			}
			ids <- res.header.Get("Location")
		}()
	}
	start.Done()
	done.Wait()
	close(ids)
	seen := map[string]int{}
	for id := range ids {
		seen[id]++
	}
	if len(seen) != 1 {
		t.Fatalf("answers = %v; want one Location for all %d", seen, requests)
	}
	if n := countTasks(t, user); n != 1 {
		t.Fatalf("%d tasks created; want 1", n)
	}
}

func TestExpiredKeysAreSwept(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	stale := newUser(t)
	if _, err := testDB.Exec(`INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at) VALUES ($1, 'old', '\x00', now() - interval '2 days')`, stale); err != nil {
		t.Fatal(err)
	}
	srv.request(t, "POST", "/api/tasks", mustToken(t, newUser(t)), map[string]any{"title": "x"}, "Idempotency-Key", "sweeper")
	var n int
	if err := testDB.QueryRow(`SELECT count(*) FROM idempotency_keys WHERE user_id = $1`, stale).Scan(&n); err != nil || n != 0 {
		t.Fatalf("stale user's expired keys = %d, %v; want swept on another user's insert", n, err)
	}
}

// schemaV1 is the schema as the first release shipped it.
const schemaV1 = `CREATE TABLE IF NOT EXISTS tasks (
    user_id     text        NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 255),
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    title       varchar(255) NOT NULL CHECK (title <> ''),
    description text,
    completed   boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, id)
);
CREATE INDEX IF NOT EXISTS tasks_user_created_idx ON tasks (user_id, created_at DESC, id DESC);`

func TestUpgradeFromFirstSchemaKeepsRows(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(schemaV1); err != nil {
		t.Fatal(err)
	}
	user := newUser(t)
	for i := 0; i < 50; i++ {
		if _, err := db.Exec(`INSERT INTO tasks (user_id, title, description, completed) VALUES ($1, $2, $3, $4)`, user, fmt.Sprintf("old %d", i), "kept", i%3 == 0); err != nil {
			t.Fatal(err)
		}
	}
	var before string
	if err := db.QueryRow(`SELECT string_agg(id || title || description || completed || created_at, ',' ORDER BY id) FROM tasks`).Scan(&before); err != nil {
		t.Fatal(err)
	}

	base, stop, done, _ := startProgram(t, baseEnv(map[string]string{"DATABASE_URL": dsn}))
	defer func() { stop(); <-done }()
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, user)
	tasks := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil))
	if len(tasks) != 50 {
		t.Fatalf("after upgrade the user has %d tasks; want 50", len(tasks))
	}
	res := srv.request(t, "GET", taskPath(tasks[0].ID), token, nil)
	if res.status != http.StatusOK || res.header.Get("ETag") != `"v1"` {
		t.Fatalf("old row after upgrade = %s ETag %q; want 200 \"v1\"", res, res.header.Get("ETag"))
	}
	var after string
	if err := db.QueryRow(`SELECT string_agg(id || title || description || completed || created_at, ',' ORDER BY id) FROM tasks`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatal("rows changed across the upgrade")
	}
	if res := srv.request(t, "PUT", taskPath(tasks[0].ID), token, map[string]any{"title": "new"}, "If-Match", `"v1"`); res.status != http.StatusOK {
		t.Fatalf("conditional write on an upgraded row = %s", res)
	}
}

func TestCORSForConditionalHeaders(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	pre := srv.request(t, "OPTIONS", "/api/tasks/1", "", nil, "Origin", "http://localhost:3000", "Access-Control-Request-Method", "PUT")
	allowed := strings.ToLower(pre.header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"if-match", "if-none-match", "idempotency-key"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("preflight Allow-Headers %q lacks %s", allowed, h)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", mustToken(t, newUser(t)), nil, "Origin", "http://localhost:3000")
	if !strings.Contains(res.header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Errorf("Expose-Headers %q lacks ETag", res.header.Get("Access-Control-Expose-Headers"))
	}
}

// --- faults and abuse ------------------------------------------------------

func TestRateLimiterBuckets(t *testing.T) {
	t.Parallel()
	l := newRateLimiter(2, 3) // 2 per second, bursts of 3
	t0 := pinnedNow
	for i := 0; i < 3; i++ {
		if ok, _ := l.allow("a", t0); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := l.allow("a", t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("fourth request = %v, wait %v; want refused with 500ms to wait", ok, wait)
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("another user was limited by a's bucket")
	}
	if ok, _ := l.allow("a", t0.Add(500*time.Millisecond)); !ok {
		t.Fatal("a token did not come back after 1/rate seconds")
	}
	// Idle users' buckets are reclaimed.
	l.allow("c", t0.Add(2*time.Minute))
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after everyone but c went idle; want 1", n)
	}
	if newRateLimiter(0, 10) != nil {
		t.Fatal("RATE_LIMIT_RPS=0 must turn the limit off")
	}
}

func TestRateLimitAnswers429(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 0.5, 3
	srv := newTestServer(t, cfg, testStore)
	token := mustToken(t, newUser(t))
	for i := 0; i < 3; i++ {
		if res := srv.request(t, "GET", "/api/tasks", token, nil); res.status != http.StatusOK {
			t.Fatalf("request %d = %s; want 200 within the burst", i+1, res)
		}
	}
	res := srv.request(t, "GET", "/api/tasks", token, nil, "Origin", "http://localhost:3000")
	wantError(t, res, http.StatusTooManyRequests, codeRateLimited)
	if ra, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After = %q; want 1 or 2 seconds", res.header.Get("Retry-After"))
	}
	if res.header.Get("Access-Control-Allow-Origin") == "" {
		t.Error("429 lacks CORS headers")
	}
	if res := srv.request(t, "GET", "/api/tasks", mustToken(t, newUser(t)), nil); res.status != http.StatusOK {
		t.Errorf("another user = %s; want 200", res)
	}
}

// TestBadTokensNeverReachTheDatabase: with the database cut off, a flood of
// bad tokens still gets 401s, not 503s: nothing touched the database.
func TestBadTokensNeverReachTheDatabase(t *testing.T) {
	t.Parallel()
	proxy, store, db := newProxiedStore(t)
	srv := newTestServer(t, testConfig(), store)
	proxy.stop()
	forged := rawToken("some-other-secret-of-at-least-32-bytes", `{"alg":"HS256"}`, `{"sub":"u","exp":9999999999}`)
	for i := 0; i < 200; i++ {
		token := []string{forged, "a.b.c", ""}[i%3]
		res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "flood"})
		if res.status != http.StatusUnauthorized {
			t.Fatalf("bad token %d = %s; want 401 without touching the database", i, res)
		}
	}
	if stats := db.Stats(); stats.OpenConnections != 0 && stats.InUse != 0 {
		t.Errorf("pool in use during a bad-token flood: %+v", stats)
	}
}

// TestSlowClientsDoNotStopService holds 500 connections open, half idle and
// half trickling a header a byte at a time, and checks that normal requests
// are still served by the real program.
func TestSlowClientsDoNotStopService(t *testing.T) {
	t.Parallel()
	base, stop, done, _ := startProgram(t, baseEnv(nil))
	defer func() { stop(); <-done }()
	addr := strings.TrimPrefix(base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 500; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	stopTrickle := make(chan struct{})
	var trickling sync.WaitGroup
	for i := 0; i < 250; i++ {
		trickling.Add(1)
		go func(c net.Conn) {
			defer trickling.Done()
			header := "GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
			for j := 0; j < len(header); j++ {
				if _, err := c.Write([]byte{header[j]}); err != nil {
					return
				}
				select {
				case <-stopTrickle:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}(conns[i])
	}
	defer func() { close(stopTrickle); trickling.Wait() }()

	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	for i := 0; i < 20; i++ {
		if res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "still served"}); res.status != http.StatusCreated {
			t.Fatalf("request %d beside 500 slow connections = %s", i, res)
		}
	}
}

func TestConcurrentStartOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	type instance struct {
		base string
		stop context.CancelFunc
		done <-chan error
	}
	instances := make(chan instance, 3)
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base, stop, done, _ := startProgram(t, baseEnv(map[string]string{"DATABASE_URL": dsn}))
			instances <- instance{base, stop, done}
		}()
	}
	wg.Wait()
	close(instances)
	token := mustToken(t, newUser(t))
	n := 0
	for in := range instances {
		n++
		srv := &testServer{Server: &httptest.Server{URL: in.base}}
		mustCreate(t, srv, token, map[string]any{"title": "from " + in.base})
		in.stop()
		if err := <-in.done; err != nil {
			t.Errorf("instance at %s: %v", in.base, err)
		}
	}
	if n != 3 {
		t.Fatalf("%d instances came up; want 3", n)
	}
}

// TestRandomizedIsolation: 20 users at once perform thousands of random
// operations on their own tasks and on other users' ids. Each user keeps a
// model of what it owns; nobody may ever see, change or delete another's
// task, and at the end the database must equal the models exactly.
func TestRandomizedIsolation(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	const users, opsPerUser = 20, 150

	type modelTask struct {
		title       string
		description *string
		completed   bool
	}
	var registry sync.Map // task id -> owner, for users to aim at each other's ids
	ids := make([]string, users)
	for i := range ids {
		ids[i] = newUser(t)
	}
	models := make([]map[int64]modelTask, users)
	var wg sync.WaitGroup
	failures := make(chan string, users*opsPerUser)
	for u := 0; u < users; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			rng := newRand(int64(u) + 1)
			own := map[int64]modelTask{}
			token := mustToken(t, ids[u])
			foreign := func() (int64, bool) {
				var picked int64
				var found bool
				registry.Range(func(k, v any) bool {
					if v.(int) != u && rng.next()%4 == 0 {
						picked, found = k.(int64), true
						return false
					}
					return true
				})
				return picked, found
			}
			anyOwn := func() (int64, bool) {
				for id := range own {
					return id, true
				}
				return 0, false
			}
			fail := func(format string, args ...any) {
				failures <- fmt.Sprintf("user %d: ", u) + fmt.Sprintf(format, args...)
			}
			for op := 0; op < opsPerUser; op++ {
				switch rng.next() % 8 {
				case 0, 1: // create
					title := fmt.Sprintf("u%d-op%d", u, op)
					var desc *string
					if rng.next()%2 == 0 {
						d := "d" + title
						desc = &d
					}
					res := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": title, "description": desc})
					if res.status != http.StatusCreated {
						fail("create = %s", res)
						continue
					}
					task := decodeTask(t, res)
					own[task.ID] = modelTask{title: title, description: desc}
					registry.Store(task.ID, u)
				case 2: // read own
					if id, ok := anyOwn(); ok {
						res := srv.request(t, "GET", taskPath(id), token, nil)
						if res.status != http.StatusOK || decodeTask(t, res).Title != own[id].title {
							fail("get own %d = %s; want %+v", id, res, own[id])
						}
					}
				case 3: // update own
					if id, ok := anyOwn(); ok {
						m := own[id]
						m.title, m.completed = m.title+"'", !m.completed
						res := srv.request(t, "PUT", taskPath(id), token, map[string]any{"title": m.title, "completed": m.completed})
						if res.status != http.StatusOK {
							fail("update own %d = %s", id, res)
						}
						own[id] = m
					}
				case 4: // delete own
					if id, ok := anyOwn(); ok {
						if res := srv.request(t, "DELETE", taskPath(id), token, nil); res.status != http.StatusNoContent {
							fail("delete own %d = %s", id, res)
						}
						delete(own, id)
					}
				case 5, 6: // touch another user's task
					id, ok := foreign()
					if !ok {
						continue
					}
					var res response
					switch rng.next() % 4 {
					case 0:
						res = srv.request(t, "GET", taskPath(id), token, nil)
					case 1:
						res = srv.request(t, "PUT", taskPath(id), token, map[string]any{"title": "stolen"})
					case 2:
						res = srv.request(t, "PATCH", taskPath(id)+"/complete", token, map[string]any{"completed": true})
					default:
						res = srv.request(t, "DELETE", taskPath(id), token, nil)
					}
					if res.status != http.StatusNotFound {
						fail("touching another user's task %d = %s; want 404", id, res)
					}
				case 7: // list: exactly the model
					list := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil))
					if len(list) != len(own) {
						fail("list has %d tasks; model has %d", len(list), len(own))
					}
					for _, task := range list {
						if _, mine := own[task.ID]; !mine || task.UserID != ids[u] {
							fail("list shows task %d owned by %q", task.ID, task.UserID)
						}
					}
				}
			}
			models[u] = own
		}(u)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}

	total := 0
	for u, own := range models {
		total += len(own)
		rows, err := testDB.Query(`SELECT id, title, description, completed FROM tasks WHERE user_id = $1`, ids[u])
		if err != nil {
			t.Fatal(err)
		}
		found := map[int64]modelTask{}
		for rows.Next() {
			var id int64
			var m modelTask
			var desc sql.NullString
			if err := rows.Scan(&id, &m.title, &desc, &m.completed); err != nil {
				t.Fatal(err)
			}
			if desc.Valid {
				m.description = &desc.String
			}
			found[id] = m
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		if len(found) != len(own) {
			t.Errorf("user %d: database has %d tasks; model %d", u, len(found), len(own))
		}
		for id, want := range own {
			got, ok := found[id]
			if !ok || got.title != want.title || got.completed != want.completed || (got.description == nil) != (want.description == nil) ||
				(got.description != nil && *got.description != *want.description) {
				t.Errorf("user %d task %d: database %+v; model %+v", u, id, got, want)
			}
		}
	}
	t.Logf("%d users, %d operations, %d tasks left, all matching their models", users, users*opsPerUser, total)
}

// xorshift is a tiny seeded generator so each user's sequence is
// reproducible without sharing math/rand state across goroutines.
type xorshift struct{ state uint64 }

func newRand(seed int64) *xorshift { return &xorshift{state: uint64(seed)*0x9E3779B97F4A7C15 | 1} }

func (x *xorshift) next() uint64 {
	x.state ^= x.state << 13
	x.state ^= x.state >> 7
	x.state ^= x.state << 17
	return x.state
}

// FuzzHandler drives the whole handler stack with arbitrary methods, paths,
// headers and bodies: no panic, no 500, and every error in the contract's
// shape.
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), "/api/tasks", true, "", "", []byte(`{"title":"a"}`))
	f.Add(uint8(1), "/api/tasks/1", true, "If-Match", `"v1"`, []byte(`{"title":"b","completed":true}`))
	f.Add(uint8(2), "/api/tasks/1/complete", true, "Content-Type", "text/plain", []byte(`{"completed":false}`))
	f.Add(uint8(3), "/api/tasks/9223372036854775808", false, "", "", []byte{})
	f.Add(uint8(4), "/api/tasks?limit=0&completed=maybe", true, "Origin", "http://localhost:3000", []byte("\xff"))
	f.Add(uint8(5), "/healthz/", false, "Access-Control-Request-Method", "PUT", []byte(nil))
	f.Add(uint8(0), "/api/tasks", true, "Idempotency-Key", "k1", []byte(`{"title":"\u0000"}`))
	methods := []string{"POST", "PUT", "PATCH", "GET", "DELETE", "OPTIONS", "HEAD", "TRACE", "BREW"}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 1000, 1000
	handler := newServer(logger, testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, newMetrics(testStore.PoolStats))
	user := "fuzz-" + randomHex(6)
	token := rawToken(testSecret, `{"alg":"HS256"}`, fmt.Sprintf(`{"sub":%q,"exp":%d}`, user, time.Now().Add(24*time.Hour).Unix()))

	f.Fuzz(func(t *testing.T, method uint8, target string, authed bool, headerName, headerValue string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		req := &http.Request{
			Method: methods[int(method)%len(methods)], URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Host: "example",
		}
		if authed {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if headerName != "" && !strings.EqualFold(headerName, "Authorization") {
			req.Header.Add(headerName, headerValue)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req.WithContext(context.Background()))
		if rec.Code >= 500 {
			t.Fatalf("%s %s = %d %s", req.Method, target, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			var e map[string]any
			if rec.Header().Get("Content-Type") != "application/json" || json.Unmarshal(rec.Body.Bytes(), &e) != nil {
				t.Fatalf("%s %s = %d with a body not in the contract's shape: %q", req.Method, target, rec.Code, rec.Body.String())
			}
			if detail, _ := e["detail"].(string); detail == "" {
				t.Fatalf("error without detail: %q", rec.Body.String())
			}
			if code, _ := e["error_code"].(string); code == "" {
				t.Fatalf("error without error_code: %q", rec.Body.String())
			}
		}
	})
}

// --- OpenAPI and metrics ---------------------------------------------------

type openAPIDoc struct {
	OpenAPI string                                `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage `json:"paths"`
}

// documentedStatuses maps "METHOD /path/{id}" to the statuses openapi.json
// lists for that operation.
func documentedStatuses(t *testing.T) map[string]map[string]bool {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q; want 3.1.0", doc.OpenAPI)
	}
	ops := map[string]map[string]bool{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			if method == "parameters" {
				continue
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			statuses := map[string]bool{}
			for status := range op.Responses {
				statuses[status] = true
			}
			ops[strings.ToUpper(method)+" "+path] = statuses
		}
	}
	return ops
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	documented := documentedStatuses(t)
	routes := map[string]bool{}
	for _, rt := range (&server{}).routes() {
		routes[rt.pattern] = true
		if documented[rt.pattern] == nil {
			t.Errorf("route %s is missing from openapi.json", rt.pattern)
		}
	}
	for op := range documented {
		if !routes[op] {
			t.Errorf("openapi.json documents %s, which no route serves", op)
		}
	}

	srv := newTestServer(t, testConfig(), testStore)
	res := srv.request(t, "GET", "/openapi.json", "", nil)
	if res.status != http.StatusOK || !bytes.Equal(res.body, openAPIDocument) || res.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json = %d %q; want the embedded document without auth", res.status, res.header.Get("Content-Type"))
	}
}

// TestOpenAPIListsReturnedStatuses drives every operation through its
// common outcomes and checks openapi.json lists each status it saw.
func TestOpenAPIListsReturnedStatuses(t *testing.T) {
	t.Parallel()
	documented := documentedStatuses(t)
	cfg := testConfig()
	srv := newTestServer(t, cfg, testStore)
	limitedCfg := testConfig()
	limitedCfg.rateLimitRPS, limitedCfg.rateLimitBurst = 0.001, 1
	limited := newTestServer(t, limitedCfg, testStore)

	proxy, downStore, _ := newProxiedStore(t)
	down := newTestServer(t, cfg, downStore)
	proxy.stop()

	token := mustToken(t, newUser(t))
	limitedToken := mustToken(t, newUser(t)) // its one-request burst goes first
	task := mustCreate(t, srv, token, map[string]any{"title": "documented"})
	id := taskPath(task.ID)
	other := taskPath(mustCreate(t, srv, token, map[string]any{"title": "kept for the 304"}).ID)
	huge := `{"title":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	good := map[string]any{"title": "t"}
	complete := map[string]any{"completed": true}

	type call struct {
		op, method, path string
		body             any
		headers          []string
		on               *testServer
		token            string
	}
	limited.request(t, "GET", "/healthz", limitedToken, nil)
	limited.request(t, "GET", "/api/tasks", limitedToken, nil) // spends the burst
	var calls []call
	ops := []struct {
		op, method, path string
		body             any
	}{
		{"GET /api/tasks", "GET", "/api/tasks", nil},
		{"POST /api/tasks", "POST", "/api/tasks", good},
		{"GET /api/tasks/{id}", "GET", id, nil},
		{"PUT /api/tasks/{id}", "PUT", id, good},
		{"PATCH /api/tasks/{id}/complete", "PATCH", id + "/complete", complete},
		{"DELETE /api/tasks/{id}", "DELETE", id, nil},
	}
	for _, o := range ops {
		calls = append(calls,
			call{o.op, o.method, o.path, o.body, nil, srv, ""},                                            // 401
			call{o.op, o.method, o.path, o.body, nil, down, token},                                        // 503
			call{o.op, o.method, o.path, o.body, nil, limited, limitedToken},                              // 429 (after its one-request burst)
			call{o.op, o.method, o.path, o.body, []string{"If-Match", `"v999"`}, srv, token},              // 412 where it applies
			call{o.op, o.method, o.path, "{", nil, srv, token},                                            // 400 where there is a body
			call{o.op, o.method, o.path, `{"title": 1, "completed": "x"}`, nil, srv, token},               // 422
			call{o.op, o.method, o.path, huge, nil, srv, token},                                           // 413
			call{o.op, o.method, strings.Replace(o.path, id, "/api/tasks/0", 1), o.body, nil, srv, token}, // 404
			call{o.op, o.method, o.path, o.body, nil, srv, token},                                         // 2xx, last: DELETE deletes
		)
	}
	calls = append(calls,
		call{"GET /api/tasks", "GET", "/api/tasks?limit=0", nil, nil, srv, token},
		call{"GET /api/tasks/{id}", "GET", other, nil, []string{"If-None-Match", `"v1"`}, srv, token},
		call{"GET /readyz", "GET", "/readyz", nil, nil, down, ""},
		call{"GET /healthz", "GET", "/healthz", nil, nil, srv, ""},
		call{"GET /readyz", "GET", "/readyz", nil, nil, srv, ""},
		call{"GET /openapi.json", "GET", "/openapi.json", nil, nil, srv, ""},
		call{"GET /healthz", "POST", "/healthz", nil, nil, srv, ""},
		call{"GET /api/tasks", "DELETE", "/api/tasks", nil, nil, srv, token},
		call{"GET /api/tasks/{id}", "POST", id, nil, nil, srv, token},
		call{"PATCH /api/tasks/{id}/complete", "GET", id + "/complete", nil, nil, srv, token},
	)
	seen := map[string]map[int]bool{}
	for _, c := range calls {
		res := c.on.request(t, c.method, c.path, c.token, c.body, c.headers...)
		if seen[c.op] == nil {
			seen[c.op] = map[int]bool{}
		}
		seen[c.op][res.status] = true
		if !documented[c.op][strconv.Itoa(res.status)] {
			t.Errorf("%s %s answered %d, which openapi.json does not list for %s", c.method, c.path, res.status, c.op)
		}
	}
	// The drive above must really reach the interesting outcomes.
	for op, want := range map[string][]int{
		"GET /api/tasks":                 {200, 401, 405, 422, 429, 503},
		"POST /api/tasks":                {201, 400, 401, 413, 422, 429, 503},
		"GET /api/tasks/{id}":            {200, 304, 401, 404, 405, 429, 503},
		"PUT /api/tasks/{id}":            {200, 400, 401, 404, 412, 413, 422, 429, 503},
		"PATCH /api/tasks/{id}/complete": {200, 400, 401, 404, 405, 412, 413, 422, 429, 503},
		"DELETE /api/tasks/{id}":         {204, 401, 404, 412, 429, 503},
		"GET /readyz":                    {200, 503},
	} {
		for _, status := range want {
			if !seen[op][status] {
				t.Errorf("%s never answered %d in this test; the drive is incomplete", op, status)
			}
		}
	}
}

var (
	metricNameRE  = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	metricLabelRE = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$`)
)

// parseExposition checks text against the Prometheus text format's rules
// and returns the samples by their full series name.
func parseExposition(t *testing.T, text string) map[string]float64 {
	t.Helper()
	types := map[string]string{}
	samples := map[string]float64{}
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("exposition does not end with a newline")
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		where := fmt.Sprintf("line %d %q", n+1, line)
		if strings.HasPrefix(line, "#") {
			fields := strings.SplitN(line, " ", 4)
			if len(fields) < 4 || (fields[1] != "HELP" && fields[1] != "TYPE") || !metricNameRE.MatchString(fields[2]) {
				t.Fatalf("%s: malformed comment", where)
			}
			if fields[1] == "TYPE" {
				if _, dup := types[fields[2]]; dup {
					t.Fatalf("%s: second TYPE for %s", where, fields[2])
				}
				switch fields[3] {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					t.Fatalf("%s: unknown type", where)
				}
				types[fields[2]] = fields[3]
			}
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("%s: no value", where)
		}
		if _, err := strconv.ParseFloat(value, 64); err != nil && value != "+Inf" {
			t.Fatalf("%s: value: %v", where, err)
		}
		name, labels := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 {
			if !strings.HasSuffix(series, "}") {
				t.Fatalf("%s: unclosed labels", where)
			}
			name, labels = series[:i], series[i+1:len(series)-1]
		}
		if !metricNameRE.MatchString(name) {
			t.Fatalf("%s: bad metric name", where)
		}
		for _, pair := range splitLabels(labels) {
			if !metricLabelRE.MatchString(pair) {
				t.Fatalf("%s: bad label %q", where, pair)
			}
		}
		familyName := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base := strings.TrimSuffix(name, suffix); base != name && types[base] == "histogram" {
				familyName = base
			}
		}
		if types[familyName] == "" {
			t.Fatalf("%s: sample before its TYPE", where)
		}
		if types[familyName] == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: counter without _total", where)
		}
		f, _ := strconv.ParseFloat(value, 64)
		if _, dup := samples[series]; dup {
			t.Fatalf("%s: duplicate series", where)
		}
		samples[series] = f
	}
	return samples
}

// splitLabels splits a{...} contents at the commas between pairs.
func splitLabels(s string) []string {
	var pairs []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case escaped:
			escaped = false
		case s[i] == '\\':
			escaped = true
		case s[i] == '"':
			inQuote = !inQuote
		case s[i] == ',' && !inQuote:
			pairs = append(pairs, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		pairs = append(pairs, s[start:])
	}
	return pairs
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.rateLimitRPS, cfg.rateLimitBurst = 0.001, 2
	logs := &syncBuffer{}
	stats := newMetrics(testStore.PoolStats)
	handler := newServer(slog.New(slog.NewJSONHandler(logs, nil)), testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, stats)
	srv := &testServer{Server: httptest.NewServer(handler), logs: logs}
	defer srv.Close()
	token := mustToken(t, newUser(t))
	task := mustCreate(t, srv, token, map[string]any{"title": "m"})
	srv.request(t, "GET", taskPath(task.ID), token, nil)
	srv.request(t, "GET", "/api/tasks", token, nil) // 429: burst of 2 spent
	srv.request(t, "GET", "/api/tasks", "", nil)
	srv.request(t, "GET", "/api/tasks/7", "expired.token.x", nil)
	srv.request(t, "BREW", "/nowhere\"odd", "", nil)
	srv.request(t, "GET", "/healthz", "", nil)

	rec := httptest.NewRecorder()
	stats.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	samples := parseExposition(t, rec.Body.String())
	for series, want := range map[string]float64{
		`todo_http_requests_total{route="/api/tasks",method="POST",status="201"}`:     1,
		`todo_http_requests_total{route="/api/tasks/{id}",method="GET",status="200"}`: 1,
		`todo_http_requests_total{route="/api/tasks",method="GET",status="429"}`:      1,
		`todo_http_requests_total{route="/api/tasks",method="GET",status="401"}`:      1,
		`todo_http_requests_total{route="/api/tasks/{id}",method="GET",status="401"}`: 1,
		`todo_http_requests_total{route="unmatched",method="OTHER",status="404"}`:     1,
		`todo_http_requests_total{route="/healthz",method="GET",status="200"}`:        1,
		`todo_auth_failures_total{reason="missing"}`:                                  1,
		`todo_auth_failures_total{reason="malformed"}`:                                1,
		`todo_rate_limited_total`:                                                 1,
		`todo_http_request_duration_seconds_count{route="/api/tasks"}`:            3,
		`todo_http_request_duration_seconds_bucket{route="/api/tasks",le="+Inf"}`: 3,
		`todo_http_requests_in_flight`:                                            0,
		`todo_db_connections_max`:                                                 20,
	} {
		if got, ok := samples[series]; !ok || got != want {
			t.Errorf("%s = %v (present %v); want %v", series, got, ok, want)
		}
	}
	for _, name := range []string{"todo_db_connections_open", "todo_db_connections_in_use", "todo_db_connections_idle", "todo_db_wait_count_total", "todo_db_wait_duration_seconds_total", "go_goroutines"} {
		if _, ok := samples[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	// Buckets are cumulative.
	prev := -1.0
	for _, le := range []string{"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf"} {
		v := samples[`todo_http_request_duration_seconds_bucket{route="/api/tasks",le="`+le+`"}`]
		if v < prev {
			t.Errorf("bucket le=%s = %v is below the previous %v", le, v, prev)
		}
		prev = v
	}
	if res := srv.request(t, "GET", "/metrics", token, nil); res.status != http.StatusNotFound {
		t.Errorf("GET /metrics on the API handler = %d; want 404", res.status)
	}
}

func TestMetricsOnlyOnTheirOwnListener(t *testing.T) {
	t.Parallel()
	base, stop, done, logs := startProgram(t, baseEnv(map[string]string{"METRICS_ADDR": "127.0.0.1:0"}))
	defer func() { stop(); <-done }()
	var metricsAddr string
	for _, line := range strings.Split(logs.String(), "\n") {
		var entry struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "metrics listening" {
			metricsAddr = entry.Addr
		}
	}
	if metricsAddr == "" {
		t.Fatalf("no metrics listener logged:\n%s", logs)
	}
	public := &testServer{Server: &httptest.Server{URL: base}}
	wantError(t, public.request(t, "GET", "/metrics", "", nil), http.StatusNotFound, codeNotFound)
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "todo_http_requests_total") {
		t.Fatalf("metrics listener = %d %s", res.StatusCode, body)
	}
	parseExposition(t, string(body))
}

// --- Better Auth jwt() plugin tokens (JWKS) --------------------------------

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

func loadVectors(t *testing.T) jwtVectors {
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

func vectorVerifier(t *testing.T, base string, v jwtVector) *verifiers {
	t.Helper()
	if v.Kind == "hs256" {
		return &verifiers{hs256: newHS256Verifier([]byte(v.Secret), "", "", "")}
	}
	keys, skipped, err := parseJWKS(v.JWKS)
	if err != nil || len(skipped) > 0 || len(keys) != 1 {
		t.Fatalf("%s: JWKS gave %d keys, skipped %v, error %v", v.Name, len(keys), skipped, err)
	}
	return &verifiers{jwks: &jwksVerifier{keys: staticKeys(keys), rules: claimRules{issuer: base, audience: base, userClaims: []string{"sub"}}}}
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
		{"wrong iss", ed.sign(t, "EdDSA", with(claims, "iss", "http://evil.example")), errTokenIssuer},
		{"wrong aud", ed.sign(t, "EdDSA", with(claims, "aud", "http://localhost:3001")), errTokenAudience},
		{"aud with path", ed.sign(t, "EdDSA", with(claims, "aud", testOrigin+"/")), errTokenAudience},
		{"expired", ed.sign(t, "EdDSA", with(claims, "exp", now.Add(-time.Minute).Unix())), errTokenExpired},
		{"no exp", ed.sign(t, "EdDSA", with(claims, "exp", nil)), errTokenMissingExp},
		{"user id only in id", ed.sign(t, "EdDSA", with(claims, "sub", nil)), errTokenUserID},
	}
	for _, c := range confused {
		if got, err := v.Verify(c.token, now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %q, %v; want %v", c.name, got, err, c.want)
		}
	}

	// JWT_ISSUER / JWT_AUDIENCE replace the origin for JWKS tokens.
	cfg.tokens.issuer, cfg.tokens.audience = "https://auth.example", "todo-api"
	v = newVerifiers(cfg, staticKeys(keys))
	custom := with(with(claims, "iss", "https://auth.example"), "aud", []string{"todo-api"})
	if got, err := v.Verify(ed.sign(t, "EdDSA", custom), now); err != nil || got != "ada" {
		t.Errorf("configured iss/aud: %q, %v", got, err)
	}
	if _, err := v.Verify(ed.sign(t, "EdDSA", claims), now); !errors.Is(err, errTokenIssuer) {
		t.Errorf("origin iss with JWT_ISSUER set: %v; want issuer error", err)
	}
}

// with returns a copy of claims with name set to value, or removed for nil.
func with(claims map[string]any, name string, value any) map[string]any {
	c := map[string]any{}
	for k, v := range claims {
		c[k] = v
	}
	if value == nil {
		delete(c, name)
	} else {
		c[name] = value
	}
	return c
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
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := verify(newTestKey(t, "EdDSA", fmt.Sprintf("forged-%d", i))); !errors.Is(err, errTokenUnknownKey) {
				t.Errorf("forged kid: %v", err)
			}
		}(i)
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
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
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
	handler := newServer(slog.New(slog.NewJSONHandler(logs, nil)), testStore, newVerifiers(cfg, cache), cfg, nil)
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
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	listener.Close()
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

// --- benchmarks (make bench) -------------------------------------------------

func BenchmarkVerifyHS256(b *testing.B) {
	v := newHS256Verifier([]byte(testSecret), "", "", "")
	token, _ := v.Sign(map[string]any{"sub": "bench-user", "iat": pinnedNow.Unix(), "exp": pinnedNow.Add(time.Hour).Unix()})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(token, pinnedNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEdDSA(b *testing.B) {
	data, _ := os.ReadFile("testdata/jwt/vectors.json")
	var vectors jwtVectors
	json.Unmarshal(data, &vectors)
	vec := vectors.Vectors[0]
	keys, _, _ := parseJWKS(vec.JWKS)
	v := &verifiers{jwks: &jwksVerifier{keys: staticKeys(keys), rules: claimRules{issuer: vectors.BaseURL, audience: vectors.BaseURL, userClaims: []string{"sub"}}}}
	now := time.Unix(vec.Iat+60, 0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(vec.Token, now); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTask() Task {
	desc := "two litres, the \"good\" kind"
	return Task{ID: 123456, UserID: "Xk3v9w1d0aQ", Title: "Buy milk and other things", Description: &desc, Completed: true, CreatedAt: pinnedNow, UpdatedAt: pinnedNow, Version: 3}
}

func BenchmarkEncodeTask(b *testing.B) {
	task := benchTask()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = task.appendJSON(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeTaskList50(b *testing.B) {
	task := benchTask()
	buf := make([]byte, 0, 16<<10)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = append(buf[:0], '[')
		for j := 0; j < 50; j++ {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = task.appendJSON(buf)
		}
		buf = append(buf, ']')
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeTask(b *testing.B) {
	body := []byte(`{"title":"  Buy milk  ","description":"two litres","completed":false}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		obj, err := decodeObject(body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := parseTaskFields(obj); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndpoints runs each endpoint through the real handler stack
// (in-process, no network) over the real database.
func BenchmarkEndpoints(b *testing.B) {
	cfg := testConfig()
	cfg.logLevel = slog.LevelWarn
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	handler := newServer(logger, testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, nil)
	user := "bench-" + randomHex(6)
	token := rawToken(testSecret, `{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"sub":%q,"exp":%d}`, user, time.Now().Add(time.Hour).Unix()))
	var ids []int64
	for i := 0; i < 50; i++ {
		var id int64
		if err := testDB.QueryRow(`INSERT INTO tasks (user_id, title) VALUES ($1, $2) RETURNING id`, user, fmt.Sprintf("task %d", i)).Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	serve := func(b *testing.B, method, target, body string, want int) {
		b.Helper()
		var reader *strings.Reader
		// headerProbe keeps the status and discards the body: the cheapest
		// ResponseWriter, so this measures the handler stack and the database.
		w := &headerProbe{header: http.Header{}}
		for i := 0; i < b.N; i++ {
			reader = strings.NewReader(body)
			req := httptest.NewRequest(method, target, reader)
			req.Header.Set("Authorization", "Bearer "+token)
			for k := range w.header {
				delete(w.header, k)
			}
			w.status = 0
			handler.ServeHTTP(w, req)
			if w.status != want && !(want == 200 && w.status == 0) {
				b.Fatalf("%s %s = %d; want %d", method, target, w.status, want)
			}
		}
	}
	b.Run("list50", func(b *testing.B) { b.ReportAllocs(); serve(b, "GET", "/api/tasks", "", 200) })
	b.Run("get", func(b *testing.B) { b.ReportAllocs(); serve(b, "GET", taskPath(ids[7]), "", 200) })
	b.Run("update", func(b *testing.B) {
		b.ReportAllocs()
		serve(b, "PUT", taskPath(ids[8]), `{"title":"updated","completed":true}`, 200)
	})
	b.Run("complete", func(b *testing.B) {
		b.ReportAllocs()
		serve(b, "PATCH", taskPath(ids[9])+"/complete", `{"completed":true}`, 200)
	})
	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		serve(b, "POST", "/api/tasks?x=1", `{"title":"created"}`, 201)
		b.StopTimer()
		testDB.Exec(`DELETE FROM tasks WHERE user_id = $1 AND title = 'created'`, user)
	})
	b.Run("auth401", func(b *testing.B) {
		b.ReportAllocs()
		saved := token
		token = strings.TrimSuffix(token, token[len(token)-4:]) + "AAAA"
		defer func() { token = saved }()
		serve(b, "GET", "/api/tasks", "", 401)
	})
}

// TestPgbenchScriptsAreTheServersSQL keeps scripts/pgbench, which measure
// the database's own ceiling in make load, identical to the statements the
// server prepares.
func TestPgbenchScriptsAreTheServersSQL(t *testing.T) {
	t.Parallel()
	scripts := []struct {
		file   string
		query  string
		params []string // the named variables for $1, $2, ...
	}{
		{"list.sql", listTasksSQL, []string{"user", "limit", "offset"}},
		{"get.sql", getTaskSQL, []string{"user", "id"}},
		{"create.sql", createTaskSQL, []string{"user", "title", "description", "completed"}},
		{"update.sql", updateTaskSQL, []string{"user", "id", "has_condition", "versions", "title", "description_set", "description", "completed"}},
		{"complete.sql", setCompletedSQL, []string{"user", "id", "has_condition", "versions", "completed"}},
		{"delete.sql", deleteTaskSQL, []string{"user", "id", "has_condition", "versions"}},
	}
	normalize := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, s := range scripts {
		data, err := os.ReadFile("scripts/pgbench/" + s.file)
		if err != nil {
			t.Fatal(err)
		}
		var sqlLines []string
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, `\`) || strings.HasPrefix(line, "--") {
				continue
			}
			sqlLines = append(sqlLines, line)
		}
		got := strings.TrimSuffix(strings.TrimSpace(strings.Join(sqlLines, "\n")), ";")
		// Longest names first, so :description_set is not read as :description.
		order := make([]int, len(s.params))
		for i := range order {
			order[i] = i
		}
		sort.Slice(order, func(a, b int) bool { return len(s.params[order[a]]) > len(s.params[order[b]]) })
		for _, i := range order {
			got = strings.ReplaceAll(got, ":"+s.params[i]+"::", fmt.Sprintf("$%d::", i+1))
			got = strings.ReplaceAll(got, ":"+s.params[i], fmt.Sprintf("$%d", i+1))
		}
		if normalize(got) != normalize(s.query) {
			t.Errorf("scripts/pgbench/%s is not the server's statement:\n got %s\nwant %s", s.file, normalize(got), normalize(s.query))
		}
	}
}

func TestTokenCache(t *testing.T) {
	t.Parallel()
	v := &verifiers{hs256: newHS256Verifier([]byte(testSecret), "", "", "")}
	c := newTokenCache(3)
	sign := func(sub string, exp time.Time) string {
		token, _ := v.hs256.Sign(map[string]any{"sub": sub, "exp": exp.Unix()})
		return token
	}
	now := pinnedNow
	short := sign("short", now.Add(10*time.Second)) // valid until exp + 30 s leeway
	long := sign("long", now.Add(time.Hour))
	for _, token := range []string{short, long} {
		if _, err := c.verify(v, token, now); err != nil {
			t.Fatal(err)
		}
	}
	if id, ok := c.get(short, now.Add(39*time.Second)); !ok || id != "short" {
		t.Errorf("cached short token before its expiry: %q, %v", id, ok)
	}
	if _, ok := c.get(short, now.Add(40*time.Second)); ok {
		t.Error("cache served a token past exp + leeway")
	}
	if _, err := c.verify(v, short, now.Add(40*time.Second)); !errors.Is(err, errTokenExpired) {
		t.Errorf("expired token through the cache: %v; want expired", err)
	}
	if _, ok := c.get(long, now.Add(tokenCacheMaxAge)); ok {
		t.Error("cache served a token longer than tokenCacheMaxAge")
	}
	for i := 0; i < 10; i++ {
		c.verify(v, sign(fmt.Sprint("u", i), now.Add(time.Hour)), now)
	}
	if n := len(c.entries); n > 3 {
		t.Errorf("cache holds %d entries; capped at 3", n)
	}
	tampered := long[:len(long)-2] + "AA"
	if _, err := c.verify(v, tampered, now); err == nil {
		t.Error("a tampered copy of a cached token passed")
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	v := &verifiers{hs256: newHS256Verifier([]byte(testSecret), "", "", "")}
	token, _ := v.hs256.Sign(map[string]any{"sub": "bench-user", "exp": pinnedNow.Add(time.Hour).Unix()})
	c := newTokenCache(tokenCacheSize)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := c.verify(v, token, pinnedNow); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStatementsUseTheirIndexes: the generic plan of every statement (as
// prepared statements run) reads through its index, and the list order
// comes from the index, never a Sort.
func TestStatementsUseTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := testDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Tiny test tables would otherwise be read whole, hiding the plan.
	for _, set := range []string{"SET enable_seqscan = off", "SET plan_cache_mode = force_generic_plan"} {
		if _, err := conn.ExecContext(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	// Lists must walk tasks_user_created_idx in order; point statements
	// must find the row by its whole key (which index the planner picks for
	// that depends on statistics: tasks_pkey at scale, see make load).
	statements := []struct {
		name, query, args, index, cond string
	}{
		{"list", listTasksSQL, "('u', 100, 0)", "tasks_user_created_idx", "(user_id = $1)"},
		{"list_by_completed", listTasksByCompletedSQL, "('u', true, 100, 0)", "tasks_user_created_idx", "(user_id = $1)"},
		{"get", getTaskSQL, "('u', 1)", "", "(id = $2)"},
		{"update", updateTaskSQL, "('u', 1, false, '{}', 't', false, NULL, NULL)", "", "(id = $2)"},
		{"complete", setCompletedSQL, "('u', 1, false, '{}', true)", "", "(id = $2)"},
		{"delete", deleteTaskSQL, "('u', 1, false, '{}')", "", "(id = $2)"},
	}
	for _, s := range statements {
		name := "plan_" + s.name + "_" + randomHex(3)
		if _, err := conn.ExecContext(ctx, "PREPARE "+name+" AS "+s.query); err != nil {
			t.Fatalf("%s: prepare: %v", s.name, err)
		}
		var plan string
		if err := conn.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) EXECUTE "+name+s.args).Scan(&plan); err != nil {
			t.Fatalf("%s: explain: %v", s.name, err)
		}
		conn.ExecContext(ctx, "DEALLOCATE "+name)
		var nodes []map[string]any
		var walk func(node map[string]any)
		walk = func(node map[string]any) {
			nodes = append(nodes, node)
			children, _ := node["Plans"].([]any)
			for _, c := range children {
				walk(c.(map[string]any))
			}
		}
		var root []struct {
			Plan map[string]any `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(plan), &root); err != nil || len(root) != 1 {
			t.Fatalf("%s: plan %s: %v", s.name, plan, err)
		}
		walk(root[0].Plan)
		usesIndex := false
		for _, n := range nodes {
			switch n["Node Type"] {
			case "Sort", "Incremental Sort", "Seq Scan":
				t.Errorf("%s: plan has a %v node:\n%s", s.name, n["Node Type"], plan)
			case "Index Scan", "Index Only Scan":
				cond, _ := n["Index Cond"].(string)
				if (s.index == "" || n["Index Name"] == s.index) && strings.Contains(cond, "(user_id = $1)") && strings.Contains(cond, s.cond) {
					usesIndex = true
				}
			}
		}
		if !usesIndex {
			t.Errorf("%s: plan does not look the rows up by %s %s:\n%s", s.name, s.index, s.cond, plan)
		}
	}
}
