package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	if os.Getenv(asProgramEnv) != "" {
		main() // see startProgramProcess
		os.Exit(0)
	}
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
	if testStore, err = openStore(ctx, testDB, testStoreOptions()); err != nil {
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
func createDatabase(t testing.TB) string {
	t.Helper()
	name := "todo_test_" + randomHex(6)
	if _, err := testDB.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() { testDB.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	return withDatabase(testDSN, name)
}

// openDatabase is createDatabase with a pool open on it for the test.
func openDatabase(t testing.TB) (string, *sql.DB) {
	t.Helper()
	dsn := createDatabase(t)
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return dsn, db
}

// openSchemaDatabase is openDatabase with the schema applied.
func openSchemaDatabase(t testing.TB) (string, *sql.DB) {
	t.Helper()
	dsn, db := openDatabase(t)
	if err := applySchema(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return dsn, db
}

// The load test's table (scripts/load.sh): 200 users with 50 tasks each,
// user ids "1" to "200", user u's tasks numbered (u-1)*50+1 to u*50, every
// other one with a description. Here every third is also completed, so
// that a list by completed has rows of both kinds to plan for.
const loadUsers, loadTasksPerUser = 200, 50

// loadSizedDatabase is a database of its own holding the load test's
// table, analyzed, so that PostgreSQL plans as it does under load: on the
// shared test database the statistics change with every other test, and
// on a near-empty table the planner may rightly prefer other plans.
func loadSizedDatabase(t testing.TB) *sql.DB {
	t.Helper()
	ctx := context.Background()
	_, db := openSchemaDatabase(t)
	if _, err := db.ExecContext(ctx, `INSERT INTO tasks (user_id, title, description, completed)
		SELECT s.u::text, 'task ' || t.i, CASE WHEN t.i % 2 = 0 THEN 'description ' || t.i END, t.i % 3 = 0
		FROM generate_series(1, $1::int) AS s(u), generate_series(1, $2::int) AS t(i) ORDER BY s.u, t.i`,
		loadUsers, loadTasksPerUser); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE tasks"); err != nil {
		t.Fatal(err)
	}
	return db
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
	return config{tokens: tokenSettings{secret: []byte(testSecret)}, cors: cors, dbTimeout: 5 * time.Second, clientStallTimeout: 10 * time.Second, logLevel: slog.LevelDebug}
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
	srv := httptest.NewServer(handlerOf(newServer(logger, store, verifier, cfg, newMetrics(store))))
	t.Cleanup(srv.Close)
	return &testServer{Server: srv, logs: logs}
}

// mustToken is a valid HS256 token for userID, an hour long.
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
	close  bool // the server said Connection: close
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends one request and reads the whole answer; it is safe in any
// goroutine. token "" sends no Authorization header; headers are name,
// value pairs.
func (s *testServer) do(method, path, token string, body any, headers ...string) (response, error) {
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
			return response{}, fmt.Errorf("encode body: %w", err)
		}
		reader = bytes.NewReader(encoded)
	}
	req, err := http.NewRequest(method, s.URL+path, reader)
	if err != nil {
		return response{}, fmt.Errorf("new request: %w", err)
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
		return response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data, close: res.Close}, nil
}

// request is do for the test's own goroutine: failing to send ends the test.
func (s *testServer) request(t *testing.T, method, path, token string, body any, headers ...string) response {
	t.Helper()
	res, err := s.do(method, path, token, body, headers...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// countStatuses sends n requests at once, the i-th as req(i) says, and
// counts the answers by status; a request that could not be sent fails
// the test.
func countStatuses(t *testing.T, srv *testServer, n int, req func(i int) (method, path, token string, body any)) map[int]int {
	t.Helper()
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		method, path, token, body := req(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := srv.do(method, path, token, body)
			if err != nil {
				t.Error(err)
				return
			}
			statuses <- res.status
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	return counts
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

// parseTask reads one task strictly; it is safe in any goroutine.
func parseTask(res response) (taskJSON, error) {
	var task taskJSON
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&task); err != nil {
		return taskJSON{}, fmt.Errorf("decode task from %s: %w", res, err)
	}
	return task, nil
}

func decodeTask(t *testing.T, res response) taskJSON {
	t.Helper()
	task, err := parseTask(res)
	if err != nil {
		t.Fatal(err)
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

// parseTasks reads a task list; it is safe in any goroutine.
func parseTasks(res response) ([]taskJSON, error) {
	var tasks []taskJSON
	if err := json.Unmarshal(res.body, &tasks); err != nil {
		return nil, fmt.Errorf("decode task list from %s: %w", res, err)
	}
	return tasks, nil
}

func decodeTasks(t *testing.T, res response) []taskJSON {
	t.Helper()
	tasks, err := parseTasks(res)
	if err != nil {
		t.Fatal(err)
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
	accepted atomic.Int64 // connections made to the database through it
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
			p.accepted.Add(1)
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
	return proxy, newStore(t, db, 0), db
}

// closedAddr is a loopback address nothing listens on: a port the kernel
// has just handed out and taken back.
func closedAddr(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

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

// launchProgram runs the real program in the background and returns its
// base URL once it listens; cancelling stops it, and the returned channel
// gives run's error. It is safe in any goroutine.
func launchProgram(env map[string]string) (string, context.CancelFunc, <-chan error, *syncBuffer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"todo-backend"}, envFrom(env), io.Discard, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if addr := loggedAddr(logs.String(), "listening"); addr != "" {
			return "http://" + addr, cancel, done, logs, nil
		}
		select {
		case err := <-done:
			cancel()
			return "", nil, nil, nil, fmt.Errorf("run ended during start-up: %v\n%s", err, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	return "", nil, nil, nil, fmt.Errorf("server did not start:\n%s", logs)
}

// loggedAddr is 127.0.0.1:PORT of the address the program's log lines in
// text give with the message msg ("listening", "metrics listening"), or
// "" when none does.
func loggedAddr(text, msg string) string {
	for _, line := range strings.Split(text, "\n") {
		var entry struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == msg {
			_, port, _ := net.SplitHostPort(entry.Addr)
			return "127.0.0.1:" + port
		}
	}
	return ""
}

// serveProgram runs the real program with env for the rest of the test,
// which fails if the program then stops with an error, and returns it as
// a testServer (its logs included).
func serveProgram(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	base, stop, done, logs := startProgram(t, env)
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("program: %v\n%s", err, logs)
		}
	})
	return &testServer{Server: &httptest.Server{URL: base}, logs: logs}
}

// startProgram is launchProgram for the test's own goroutine.
func startProgram(t *testing.T, env map[string]string) (string, context.CancelFunc, <-chan error, *syncBuffer) {
	t.Helper()
	base, stop, done, logs, err := launchProgram(env)
	if err != nil {
		t.Fatal(err)
	}
	return base, stop, done, logs
}

func ptr[T any](v T) *T { return &v }

// testStoreOptions are the server's defaults: prepared statements and
// DB_BATCH_MAX 32, and no log.
func testStoreOptions() storeOptions {
	return storeOptions{prepared: true, batchMax: 32, logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}
}

// newStore is the tests' one way to make a store: over db (nil: a pool of
// its own on the shared test database), capped at conns connections (0:
// as db is), with testStoreOptions changed by change; it closes with the
// test.
func newStore(t testing.TB, db *sql.DB, conns int, change ...func(*storeOptions)) *Store {
	t.Helper()
	if db == nil {
		db = openPool(t)
	}
	if conns > 0 {
		db.SetMaxOpenConns(conns)
	}
	opts := testStoreOptions()
	for _, c := range change {
		c(&opts)
	}
	store, err := openStore(context.Background(), db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// handlerOf is newServer's handler, for tests that need no server.
func handlerOf(_ *server, h http.Handler) http.Handler { return h }

// openPool is a pool of its own on the shared test database, closed with
// the test.
func openPool(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", testDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// waitingInBatchers waits until n requests wait in the store's batchers.
func waitingInBatchers(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		got := 0
		for _, k := range s.kinds() {
			got += k.waitingCount()
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests wait in the batchers", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// batchesOf reports, for op, how many statements ran for waiting requests
// and how many of them held more than one request.
func batchesOf(s *Store, op string) (statements, shared uint64) {
	for _, st := range s.BatchStats() {
		if st.op == op {
			return st.buckets[len(st.buckets)-1], st.buckets[len(st.buckets)-1] - st.buckets[0]
		}
	}
	return 0, 0
}

// heldStore is a one-connection store whose connection the test holds, so
// that every request it is given waits; release lets them all run.
func heldStore(t *testing.T, db *sql.DB, change ...func(*storeOptions)) (store *Store, release func()) {
	t.Helper()
	store = newStore(t, db, 1, change...)
	if err := store.queue.enter(context.Background()); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(store.queue.leave) }
	t.Cleanup(release)
	return store, release
}

// listThrough lists as the handler does, page by page into a listAnswer
// over a recorder, and returns the whole JSON array.
func listThrough(ctx context.Context, store *Store, userID string, f listFilter) (string, error) {
	rec := httptest.NewRecorder()
	answer := newListAnswer(rec, nil)
	list := newTaskList(userID, f)
	for done := false; !done; {
		var err error
		answer.markPage()
		if done, err = store.NextPage(ctx, list, answer); err != nil {
			return "", err
		}
		if !done && answer.full() {
			if err := answer.send(time.Minute); err != nil {
				return "", err
			}
		}
	}
	return rec.Body.String() + string(answer.body) + "]", nil
}

// loadRun is one execution of one of the store's statements.
type loadRun struct {
	name string
	st   *statement
	args []any
}

// loadRuns are the batch statements, and the single get and list beside
// them, as run the k-th time on the load test's table: batches of 3 to 8
// (size, when not 0), each request of a different user.
func loadRuns(s *Store, k, size int) []loadRun {
	if size == 0 {
		size = 3 + k%6
	}
	var userIDs, ids, titles, nulls, falses, trues, limits, offsets arrayLiteral
	for i := range size {
		u := 1 + (k*7+i*13)%loadUsers
		userIDs.text(strconv.Itoa(u))
		ids.int(int64((u-1)*loadTasksPerUser + 1 + i))
		titles.text("batched")
		nulls.null()
		falses.bool(false)
		trues.bool(true)
		limits.int(firstPageRows + 1)
		offsets.int(0)
	}
	u := 1 + k%loadUsers
	return []loadRun{
		{"get", s.getTask, []any{strconv.Itoa(u), int64((u-1)*loadTasksPerUser + 1)}},
		{"list", s.listStatements[listShape{}.index()], []any{strconv.Itoa(u), noLimit, int64(0)}},
		{"get_batch", s.getTasks, []any{userIDs.String(), ids.String()}},
		{"list_batch", s.listTaskBatch, []any{userIDs.String(), nulls.String(), limits.String(), offsets.String()}},
		{"change_batch", s.changeTasks, []any{userIDs.String(), ids.String(), nulls.String(), falses.String(), nulls.String(), nulls.String(), trues.String(), 0, 0}},
		{"create_batch", s.createTasks, []any{userIDs.String(), titles.String(), nulls.String(), falses.String(), 0, 0}},
	}
}

// exec runs the statement and reads every row it answers.
func (r loadRun) exec(ctx context.Context) error {
	rows, err := r.st.QueryContext(ctx, r.args...)
	if err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", r.name, err)
	}
	return nil
}

func countTasks(t *testing.T, userID string) int {
	t.Helper()
	var n int
	if err := testDB.QueryRow(`SELECT count(*) FROM tasks WHERE user_id = $1`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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

// openServerStore opens the pool as the server does (openDB: its dialer
// and its deadlines, DB_TIMEOUT from cfg) on a database that has the
// schema, and makes a store on it; both close with the test.
func openServerStore(t *testing.T, cfg config) *Store {
	t.Helper()
	ctx := context.Background()
	cfg.dbWait, cfg.dbMaxConns, cfg.dbPreparedStatements = 5*time.Second, 2, true
	db, _, err := openDB(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newStore(t, db, 0)
}

// userPath is the path-scoped shape of a /api/tasks... path for userID.
func userPath(userID, rest string) string {
	return "/api/" + url.PathEscape(userID) + "/tasks" + rest
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
