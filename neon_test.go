package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests in this file run against the local stand-in for Neon that
// scripts/neon-stack.sh starts (make test does): PostgreSQL with TLS and
// SCRAM only, and in front of it PgBouncer 1.21+ (Neon's kind of pooler)
// in transaction and session mode, with max_prepared_statements 200, 3
// and 0, and Debian's PgBouncer 1.18. They are not parallel: one of them
// stops PostgreSQL behind the poolers.

// neonStack is what scripts/neon-stack.sh hands the tests.
type neonStack struct {
	direct, pooledTx, pooledSession string // URLs without a query
	pooledEvicting                  string // max_prepared_statements=3
	pooledUntracked                 string // max_prepared_statements=0
	pooledOld, noOldPooler          string // PgBouncer 1.18, or why there is none
	loginRetry                      time.Duration
	ca, wrongCA                     string
	pgCtl                           string
}

// needNeonStack returns the stack, or skips the test outside CI when it is
// not running; in CI (CI set) its absence fails the test.
func needNeonStack(t *testing.T) neonStack {
	t.Helper()
	s := neonStack{
		direct: os.Getenv("TEST_NEON_DIRECT"), pooledTx: os.Getenv("TEST_NEON_POOLED_TX"),
		pooledSession: os.Getenv("TEST_NEON_POOLED_SESSION"), ca: os.Getenv("TEST_NEON_CA"),
		pooledEvicting: os.Getenv("TEST_NEON_POOLED_TX_EVICTING"), pooledUntracked: os.Getenv("TEST_NEON_POOLED_TX_UNTRACKED"),
		pooledOld: os.Getenv("TEST_NEON_POOLED_TX_OLD"), noOldPooler: os.Getenv("TEST_NEON_NO_OLD_POOLER"),
		wrongCA: os.Getenv("TEST_NEON_WRONG_CA"), pgCtl: os.Getenv("TEST_NEON_PG_CTL"),
	}
	retry, err := strconv.Atoi(os.Getenv("TEST_NEON_LOGIN_RETRY"))
	s.loginRetry = time.Duration(retry) * time.Second
	if s.direct == "" || s.pooledTx == "" || s.pooledSession == "" || s.pooledEvicting == "" || s.pooledUntracked == "" ||
		s.pooledOld == "" && s.noOldPooler == "" || err != nil || s.ca == "" || s.wrongCA == "" || s.pgCtl == "" {
		msg := "the Neon stand-in is not running: run make test, or scripts/neon-stack.sh go test ./..."
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return s
}

// neonEnv is the program's environment for DATABASE_URL dsn.
func neonEnv(dsn string, more ...string) map[string]string {
	env := baseEnv(map[string]string{"DATABASE_URL": dsn, "DB_WAIT": "3s", "RATE_LIMIT_RPS": "0"})
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	return env
}

// startNeonProgram runs the real program on dsn for the rest of the test.
func startNeonProgram(t *testing.T, dsn string, more ...string) (*testServer, *syncBuffer) {
	t.Helper()
	srv := serveProgram(t, neonEnv(dsn, more...))
	return srv, srv.logs
}

// runUntilExit runs the program on dsn, which must fail at start, and
// returns its error and how long it took.
func runUntilExit(t *testing.T, dsn string, more ...string) (error, time.Duration, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var logs syncBuffer
	start := time.Now()
	err := run(ctx, []string{"todo-backend"}, envFrom(neonEnv(dsn, more...)), io.Discard, &logs)
	if err == nil {
		t.Fatalf("run on %s started; want a start-up error", redactPassword(dsn))
	}
	return err, time.Since(start), logs.String()
}

func redactPassword(dsn string) string {
	if at := strings.Index(dsn, "@"); at > 0 {
		if colon := strings.LastIndex(dsn[:at], ":"); colon > 0 {
			return dsn[:colon+1] + "***" + dsn[at:]
		}
	}
	return dsn
}

func passwordOf(dsn string) string {
	at := strings.Index(dsn, "@")
	colon := strings.LastIndex(dsn[:at], ":")
	return dsn[colon+1 : at]
}

// exerciseContract drives every endpoint through its success and error
// cases, ETags, If-Match and Idempotency-Key, as one user.
func exerciseContract(t *testing.T, srv *testServer) {
	t.Helper()
	user := newUser(t)
	token := mustToken(t, user)
	task := mustCreate(t, srv, token, map[string]any{"title": "  pooled  ", "description": "d"})
	if task.Title != "pooled" || task.UserID != user {
		t.Fatalf("created %+v", task)
	}
	one := taskPath(task.ID)
	res := srv.request(t, "GET", one, token, nil)
	if res.status != http.StatusOK || res.header.Get("ETag") != `"v1"` {
		t.Fatalf("get = %s %q", res, res.header.Get("ETag"))
	}
	if res := srv.request(t, "GET", one, token, nil, "If-None-Match", `"v1"`); res.status != http.StatusNotModified {
		t.Errorf("If-None-Match = %s; want 304", res)
	}
	if res := srv.request(t, "PUT", one, token, map[string]any{"title": "put", "completed": true}, "If-Match", `"v1"`); res.status != http.StatusOK {
		t.Errorf("PUT with If-Match = %s", res)
	}
	wantError(t, srv.request(t, "PUT", one, token, map[string]any{"title": "stale"}, "If-Match", `"v1"`), http.StatusPreconditionFailed, codePreconditionFailed)
	wantError(t, srv.request(t, "PUT", one, token, map[string]any{"title": ""}), http.StatusUnprocessableEntity, codeValidation)
	wantError(t, srv.request(t, "PUT", one, token, `{"title":`), http.StatusBadRequest, codeBadRequest)
	if res := srv.request(t, "PATCH", one+"/complete", token, map[string]any{"completed": false}); res.status != http.StatusOK || decodeTask(t, res).Completed {
		t.Errorf("PATCH = %s", res)
	}
	if res := srv.request(t, "PATCH", one+"/complete", token, nil); res.status != http.StatusOK || !decodeTask(t, res).Completed {
		t.Errorf("toggle = %s", res)
	}
	mustCreate(t, srv, token, map[string]any{"title": "another"})
	if list := decodeTasks(t, srv.request(t, "GET", "/api/tasks?sort=title&status=all", token, nil)); len(list) != 2 || list[0].Title != "another" {
		t.Errorf("list = %+v", list)
	}
	if list := decodeTasks(t, srv.request(t, "GET", userPath(user, "?status=completed"), token, nil)); len(list) != 1 {
		t.Errorf("completed list = %+v", list)
	}
	wantError(t, srv.request(t, "GET", "/api/tasks?limit=0", token, nil), http.StatusUnprocessableEntity, codeValidation)
	first := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "once"}, "Idempotency-Key", "pooled-key")
	again := srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "once"}, "Idempotency-Key", "pooled-key")
	if first.status != http.StatusCreated || again.status != http.StatusCreated || string(first.body) != string(again.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("idempotent create: %s then %s", first, again)
	}
	wantError(t, srv.request(t, "POST", "/api/tasks", token, map[string]any{"title": "other"}, "Idempotency-Key", "pooled-key"), http.StatusUnprocessableEntity, codeValidation)
	if res := srv.request(t, "DELETE", one, token, nil, "If-Match", `"v4"`); res.status != http.StatusNoContent {
		t.Errorf("DELETE with If-Match = %s", res)
	}
	wantError(t, srv.request(t, "GET", one, token, nil), http.StatusNotFound, codeNotFound)
	wantError(t, srv.request(t, "GET", one, mustToken(t, newUser(t)), nil), http.StatusNotFound, codeNotFound)
	wantError(t, srv.request(t, "GET", "/api/tasks", "", nil), http.StatusUnauthorized, codeAuthenticationRequired)
	if res := srv.request(t, "GET", "/readyz", "", nil); res.status != http.StatusOK {
		t.Errorf("readyz = %s", res)
	}
}

// TestNeonDirectStrings: the direct host's strings, as the console gives
// them and as README says to change them.
func TestNeonDirectStrings(t *testing.T) {
	stack := needNeonStack(t)

	// channel_binding=require turns into verify-full against the system
	// roots, which do not hold the test CA: one line that says how to fix.
	err, took, logs := runUntilExit(t, stack.direct+"?sslmode=require&channel_binding=require")
	for _, want := range []string{"channel_binding=require", "sslrootcert=", "did not verify"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("channel_binding=require with an unknown CA: %v; want it to name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "waited") || took > 3*time.Second {
		t.Errorf("a certificate failure took %v and said %v; want at once, without 'waited'", took, err)
	}
	if !strings.Contains(logs, "channel_binding=require") {
		t.Errorf("no start-up line about channel_binding:\n%s", logs)
	}

	// Naming the CA makes the same string work, and the contract holds.
	srv, logs2 := startNeonProgram(t, stack.direct+"?sslmode=require&channel_binding=require&sslrootcert="+stack.ca)
	exerciseContract(t, srv)
	if !strings.Contains(logs2.String(), "verify-full") {
		t.Errorf("start-up log does not say what channel_binding became:\n%s", logs2)
	}

	srv, _ = startNeonProgram(t, stack.direct+"?sslmode=verify-full&sslrootcert="+stack.ca)
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "verified"})
	srv, _ = startNeonProgram(t, stack.direct+"?sslmode=require&channel_binding=prefer")
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "prefer"})
	srv, _ = startNeonProgram(t, "host=127.0.0.1 port="+portOf(t, stack.direct)+" user=neon password="+passwordOf(stack.direct)+
		" dbname=neondb sslmode=require channel_binding=require sslrootcert="+stack.ca)
	mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "key=value"})

	// A wrong CA fails at once with the same one line.
	err, took, _ = runUntilExit(t, stack.direct+"?sslmode=require&channel_binding=require&sslrootcert="+stack.wrongCA)
	if !strings.Contains(err.Error(), "did not verify") || took > 3*time.Second {
		t.Errorf("wrong CA: %v after %v; want the certificate line at once", err, took)
	}
	err, took, _ = runUntilExit(t, stack.direct+"?sslmode=verify-full&sslrootcert="+stack.wrongCA)
	if !strings.Contains(err.Error(), "not retried") || !strings.Contains(err.Error(), "certificate") || took > 3*time.Second {
		t.Errorf("verify-full with a wrong CA: %v after %v; want a certificate error at once", err, took)
	}
}

// TestNeonStartFailuresTellTheTruth: permanent failures stop at once with
// their reason, never the password, and never claim a wait.
func TestNeonStartFailuresTellTheTruth(t *testing.T) {
	stack := needNeonStack(t)
	wrongPassword := strings.Replace(stack.direct, ":"+passwordOf(stack.direct)+"@", ":not-the-password@", 1)
	cases := []struct {
		name, dsn, want string
	}{
		{"plain TCP to a TLS-only server", stack.direct + "?sslmode=disable", "no encryption"},
		{"wrong password", wrongPassword + "?sslmode=require", "28P01"},
		{"unknown database", strings.Replace(stack.direct, "/neondb", "/nodb", 1) + "?sslmode=require", "3D000"},
		{"channel_binding=require without TLS", stack.direct + "?sslmode=disable&channel_binding=require", "needs TLS"},
		{"unknown channel_binding", stack.direct + "?sslmode=require&channel_binding=maybe", "channel_binding must be"},
		{"a startup parameter PgBouncer refuses", stack.pooledSession + "?sslmode=require&search_path=public", "08P01"},
		{"a setting PostgreSQL does not know", stack.direct + "?sslmode=require&no_such_setting=1", "42704"},
	}
	for _, c := range cases {
		err, took, logs := runUntilExit(t, c.dsn)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want it to say %q", c.name, err, c.want)
		}
		if strings.Contains(err.Error(), "waited") || took > 3*time.Second {
			t.Errorf("%s: took %v, said %v; want at once, without 'waited'", c.name, took, err)
		}
		if strings.Contains(err.Error()+logs, passwordOf(stack.direct)) || strings.Contains(err.Error()+logs, "not-the-password") {
			t.Errorf("%s: the password reached the error or the log", c.name)
		}
	}
}

// TestNeonSystemRootsFromSSLCertFile: sslrootcert=system uses Go's system
// pool, which SSL_CERT_FILE points at the test CA. The pool is read once
// per process, so the program runs as a process of its own.
func TestNeonSystemRootsFromSSLCertFile(t *testing.T) {
	stack := needNeonStack(t)
	for _, dsn := range []string{
		stack.direct + "?sslmode=verify-full&sslrootcert=system",
		stack.pooledTx + "?sslmode=require&channel_binding=require",
	} {
		env := neonEnv(dsn, "SSL_CERT_FILE", stack.ca, "SSL_CERT_DIR", "/nonexistent", "DB_PREPARED_STATEMENTS", "false", asProgramEnv, "1")
		base, stop := startProgramProcess(t, env)
		srv := &testServer{Server: &httptest.Server{URL: base}}
		mustCreate(t, srv, mustToken(t, newUser(t)), map[string]any{"title": "system roots"})
		stop()
	}
}

// asProgramEnv, set in a test binary's environment, makes TestMain run
// the program itself instead of the tests.
const asProgramEnv = "TODO_BACKEND_TEST_AS_PROGRAM"

// startProgramProcess runs this test binary as the program with exactly
// env, and returns its base URL and a stop function.
func startProgramProcess(t *testing.T, env map[string]string) (string, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			lines <- scanner.Text()
		}
		close(lines)
	}()
	var seen []string
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("program exited during start-up:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			if addr := loggedAddr(line, "listening"); addr != "" {
				go func() {
					for range lines { // keep the pipe drained
					}
				}()
				var once sync.Once
				stop := func() {
					once.Do(func() {
						cmd.Process.Signal(os.Interrupt)
						cmd.Wait()
					})
				}
				t.Cleanup(stop)
				return "http://" + addr, stop
			}
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("program did not start:\n%s", strings.Join(seen, "\n"))
		}
	}
}

// verified is how the tests point the program at a URL of the stack.
func (s neonStack) verified(url string) string {
	return url + "?sslmode=verify-full&sslrootcert=" + s.ca
}

// TestNeonPooledTransactionMode: through Neon's kind of pooler (PgBouncer
// 1.21+ in transaction mode, with max_prepared_statements 200, and 3 to
// force evictions), with every setting at its default, the probe finds
// that prepared statements hold, and the whole contract works, with many
// requests at once.
func TestNeonPooledTransactionMode(t *testing.T) {
	stack := needNeonStack(t)
	for name, url := range map[string]string{"max_prepared_statements=200": stack.pooledTx, "max_prepared_statements=3": stack.pooledEvicting} {
		t.Run(name, func(t *testing.T) {
			srv, logs := startNeonProgram(t, url+"?sslmode=require&channel_binding=require&sslrootcert="+stack.ca)
			if !strings.Contains(logs.String(), "prepared statements: the path to PostgreSQL keeps each connection's own") {
				t.Errorf("the probe did not find that the pooler holds prepared statements:\n%s", logs)
			}
			exerciseContract(t, srv)
			concurrently(t, srv, 16)
		})
	}
}

// TestNeonPooledSessionMode: in session mode prepared statements work.
func TestNeonPooledSessionMode(t *testing.T) {
	stack := needNeonStack(t)
	srv, logs := startNeonProgram(t, stack.verified(stack.pooledSession))
	if !strings.Contains(logs.String(), "prepared statements: the path to PostgreSQL keeps each connection's own") {
		t.Errorf("the probe did not find that session mode holds prepared statements:\n%s", logs)
	}
	exerciseContract(t, srv)
	concurrently(t, srv, 8)
}

// concurrently runs workers users through create, get, update and list at
// once; every answer must be the success it asks for.
func concurrently(t *testing.T, srv *testServer, workers int) {
	t.Helper()
	tokens := make([]string, workers)
	for i := range tokens {
		tokens[i] = mustToken(t, newUser(t))
	}
	var wg sync.WaitGroup
	failures := make(chan string, workers*40)
	for _, token := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				res, err := srv.do("POST", "/api/tasks", token, map[string]any{"title": fmt.Sprint("c", i)})
				if err != nil || res.status != http.StatusCreated {
					failures <- fmt.Sprintf("create: %v %s", err, res)
					continue
				}
				task, err := parseTask(res)
				if err != nil {
					failures <- err.Error()
					continue
				}
				for _, r := range []struct {
					method, path string
					body         any
					want         int
				}{
					{"GET", taskPath(task.ID), nil, http.StatusOK},
					{"PUT", taskPath(task.ID), map[string]any{"title": "u"}, http.StatusOK},
					{"GET", "/api/tasks?limit=5", nil, http.StatusOK},
				} {
					if res, err := srv.do(r.method, r.path, token, r.body); err != nil || res.status != r.want {
						failures <- fmt.Sprintf("%s %s: %v %s", r.method, r.path, err, res)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}

// TestNeonPoolerThatCannotHoldPreparedStatements: behind PgBouncer with
// max_prepared_statements=0, and behind Debian's 1.18, in transaction
// mode, with every setting at its default, the start-up probe finds that
// prepared statements do not hold and says so in one line; then mixed
// load of every kind of statement, with batches forming, gets no 500 and
// no other request's statement: every answer and, at the end, the
// database match a model of every acknowledged write. (Before the probe,
// requests here ran each other's statements: 500s, and acknowledged
// tasks gone.)
func TestNeonPoolerThatCannotHoldPreparedStatements(t *testing.T) {
	stack := needNeonStack(t)
	poolers := map[string]string{"max_prepared_statements=0": stack.pooledUntracked, "PgBouncer 1.18": stack.pooledOld}
	for name, url := range poolers {
		t.Run(name, func(t *testing.T) {
			if url == "" {
				t.Skip(stack.noOldPooler)
			}
			srv, logs := startNeonProgram(t, stack.verified(url), "METRICS_ADDR", "127.0.0.1:0")
			if n := strings.Count(logs.String(), "prepared statements: the path to PostgreSQL does not keep each connection's own"); n != 1 {
				t.Errorf("%d log lines say the probe chose unnamed statements; want 1:\n%s", n, logs)
			}
			mixedLoadAgainstModel(t, srv, stack, 16, mixedLoadDuration(t))
			// The load formed batches: shared statements ran unnamed too.
			samples := parseExposition(t, metricsOf(t, logs))
			shared := 0.0
			for _, op := range []string{"get", "create", "change", "list"} {
				shared += samples[`todo_db_batch_size_count{op="`+op+`"}`] - samples[`todo_db_batch_size_bucket{op="`+op+`",le="1"}`]
			}
			if shared == 0 {
				t.Error("no statement was shared by several requests: the load formed no batches")
			}
		})
	}
}

// metricsOf reads GET /metrics from the program whose logs say where its
// metrics listener is.
func metricsOf(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	addr := loggedAddr(logs.String(), "metrics listening")
	if addr == "" {
		t.Fatalf("no metrics listener in the log:\n%s", logs)
	}
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// mixedLoadDuration is how long mixedLoadAgainstModel runs: 3 s, or
// TEST_NEON_LOAD_SECONDS for a longer look (the 10 runs of 5 s:
// TEST_NEON_LOAD_SECONDS=5 go test -count=10 -run PoolerThatCannot).
func mixedLoadDuration(t *testing.T) time.Duration {
	if v := os.Getenv("TEST_NEON_LOAD_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TEST_NEON_LOAD_SECONDS=%q: want a whole number of seconds", v)
		}
		return time.Duration(n) * time.Second
	}
	return 3 * time.Second
}

// modelTask is what a worker of mixedLoadAgainstModel knows of one task.
type modelTask struct {
	title       string
	description *string
	completed   bool
	etag        string
}

// mixedLoadAgainstModel runs workers users, each alone on its own tasks
// for d, through a random mix of creates (with and without
// Idempotency-Key, replayed), gets, lists, PUTs, DELETEs (with and
// without If-Match, current and stale), PATCH complete and toggles. Each
// worker keeps a model of its user's tasks from the answers; every answer
// must be the one the model predicts, and at the end the database itself
// (reached directly) must hold exactly the model's tasks.
func mixedLoadAgainstModel(t *testing.T, srv *testServer, stack neonStack, workers int, d time.Duration) {
	t.Helper()
	users := make([]string, workers)
	models := make([]map[int64]*modelTask, workers)
	failures := make(chan string, 100)
	fail := func(format string, args ...any) {
		select {
		case failures <- fmt.Sprintf(format, args...):
		default:
		}
	}
	var wg sync.WaitGroup
	var requests atomic.Int64
	deadline := time.Now().Add(d)
	for w := range workers {
		users[w] = newUser(t)
		models[w] = map[int64]*modelTask{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := mustToken(t, users[w])
			model := models[w]
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			ids := func() []int64 {
				all := make([]int64, 0, len(model))
				for id := range model {
					all = append(all, id)
				}
				slices.Sort(all)
				return all
			}
			pick := func() (int64, *modelTask) {
				all := ids()
				if len(all) == 0 {
					return 0, nil
				}
				id := all[rng.IntN(len(all))]
				return id, model[id]
			}
			check := func(what string, res response, err error, status int) bool {
				requests.Add(1)
				if err != nil || res.status != status {
					fail("%s: %v %s; want %d", what, err, res, status)
					return false
				}
				return true
			}
			same := func(what string, got taskJSON, want *modelTask) {
				if got.Title != want.title || got.Completed != want.completed || !equalText(got.Description, want.description) {
					fail("%s: got %+v; the model has %+v", what, got, *want)
				}
			}
			for n := 0; time.Now().Before(deadline); n++ {
				id, task := pick()
				path := taskPath(id)
				switch op := rng.IntN(10); {
				case op < 2 || task == nil:
					body := map[string]any{"title": fmt.Sprintf("t%d-%d", w, n), "completed": n%3 == 0}
					var desc *string
					if n%2 == 0 {
						d := fmt.Sprint("d", n)
						desc, body["description"] = &d, d
					}
					var headers []string
					if op == 1 {
						headers = []string{"Idempotency-Key", fmt.Sprintf("k%d-%d", w, n)}
					}
					res, err := srv.do("POST", "/api/tasks", token, body, headers...)
					if !check("create", res, err, http.StatusCreated) {
						continue
					}
					created, _ := parseTask(res)
					model[created.ID] = &modelTask{title: body["title"].(string), description: desc, completed: n%3 == 0, etag: res.header.Get("ETag")}
					same("create", created, model[created.ID])
					if op == 1 {
						again, err := srv.do("POST", "/api/tasks", token, body, headers...)
						if check("replayed create", again, err, http.StatusCreated) {
							if replayed, _ := parseTask(again); replayed.ID != created.ID {
								fail("a replayed key made task %d beside %d", replayed.ID, created.ID)
							}
						}
					}
				case op == 2:
					res, err := srv.do("GET", path, token, nil)
					if check("get", res, err, http.StatusOK) {
						got, _ := parseTask(res)
						same("get", got, task)
					}
				case op == 3:
					res, err := srv.do("GET", "/api/tasks", token, nil)
					if !check("list", res, err, http.StatusOK) {
						continue
					}
					list, _ := parseTasks(res)
					if len(list) != len(model) {
						fail("list has %d tasks; the model %d", len(list), len(model))
					}
					for _, got := range list {
						if want, ok := model[got.ID]; !ok {
							fail("list has task %d the model does not", got.ID)
						} else {
							same("list", got, want)
						}
					}
				case op == 4 || op == 5:
					title := fmt.Sprintf("u%d-%d", w, n)
					headers, stale := ifMatchFor(op == 5, n, task)
					res, err := srv.do("PUT", path, token, map[string]any{"title": title}, headers...)
					if stale {
						check("stale PUT", res, err, http.StatusPreconditionFailed)
						continue
					}
					if check("PUT", res, err, http.StatusOK) {
						task.title, task.etag = title, res.header.Get("ETag")
						got, _ := parseTask(res)
						same("PUT", got, task)
					}
				case op == 6 || op == 7:
					var body any
					if op == 6 {
						body = map[string]any{"completed": n%2 == 0}
					}
					res, err := srv.do("PATCH", path+"/complete", token, body)
					if check("complete", res, err, http.StatusOK) {
						if op == 6 {
							task.completed = n%2 == 0
						} else {
							task.completed = !task.completed
						}
						task.etag = res.header.Get("ETag")
						got, _ := parseTask(res)
						same("complete", got, task)
					}
				default:
					headers, stale := ifMatchFor(op == 9, n, task)
					res, err := srv.do("DELETE", path, token, nil, headers...)
					if stale {
						check("stale DELETE", res, err, http.StatusPreconditionFailed)
					} else if check("DELETE", res, err, http.StatusNoContent) {
						delete(model, id)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	// The database itself, reached directly, holds exactly the model.
	db, err := sql.Open("postgres", stack.verified(stack.direct))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for w, user := range users {
		rows, err := db.Query("SELECT id, title, description, completed FROM tasks WHERE user_id = $1", user)
		if err != nil {
			t.Fatal(err)
		}
		stored := 0
		for rows.Next() {
			var got taskJSON
			if err := rows.Scan(&got.ID, &got.Title, &got.Description, &got.Completed); err != nil {
				t.Fatal(err)
			}
			stored++
			if want, ok := models[w][got.ID]; !ok {
				t.Errorf("the database holds task %d of %s that no one acknowledged", got.ID, user)
			} else if got.Title != want.title || got.Completed != want.completed || !equalText(got.Description, want.description) {
				t.Errorf("the database holds %+v; acknowledged was %+v", got, *want)
			}
		}
		rows.Close()
		if stored != len(models[w]) {
			t.Errorf("the database holds %d tasks of %s; %d were acknowledged and not deleted", stored, user, len(models[w]))
		}
	}
	t.Logf("%d requests from %d workers in %v", requests.Load(), workers, d)
}

// ifMatchFor is a write's If-Match in mixedLoadAgainstModel: none unless
// conditional; then the task's current ETag, or on every other request a
// stale one.
func ifMatchFor(conditional bool, n int, task *modelTask) (headers []string, stale bool) {
	if !conditional {
		return nil, false
	}
	if n%2 == 0 {
		return []string{"If-Match", `"v999999"`}, true
	}
	return []string{"If-Match", task.etag}, false
}

func equalText(a, b *string) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// TestNeonOutageBehindPgBouncer: PostgreSQL stops behind PgBouncer. A
// request ends at DB_TIMEOUT with a 503 although nobody answers lib/pq's
// cancel; when PostgreSQL is back, the same server answers 200s again
// within PgBouncer's server_login_retry (README, Failure behaviour), with
// every setting at its default.
func TestNeonOutageBehindPgBouncer(t *testing.T) {
	stack := needNeonStack(t)
	for _, mode := range []struct{ name, dsn string }{
		{"transaction", stack.verified(stack.pooledTx)},
		{"session", stack.verified(stack.pooledSession)},
	} {
		t.Run(mode.name, func(t *testing.T) {
			srv, _ := startNeonProgram(t, mode.dsn, "DB_TIMEOUT", "2s")
			token := mustToken(t, newUser(t))
			mustCreate(t, srv, token, map[string]any{"title": "before"})
			pgCtl(t, stack, "stop")
			restarted := false
			defer func() {
				if !restarted {
					pgCtl(t, stack, "start")
				}
			}()
			start := time.Now()
			res := srv.request(t, "GET", "/api/tasks", token, nil)
			took := time.Since(start)
			wantError(t, res, http.StatusServiceUnavailable, codeUnavailable)
			// DB_TIMEOUT is 2 s; PgBouncer's own login retry is 15 s.
			if took > 4*time.Second {
				t.Errorf("a request while PostgreSQL was down took %v; want about DB_TIMEOUT (2s)", took)
			}
			pgCtl(t, stack, "start")
			restarted = true
			// Back within server_login_retry, and a request's DB_TIMEOUT.
			deadline := time.Now().Add(stack.loginRetry + 2*time.Second + time.Second)
			for {
				res := srv.request(t, "GET", "/api/tasks", token, nil)
				if res.status == http.StatusOK {
					break
				}
				if res.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("after PostgreSQL came back: %s", res)
				}
				time.Sleep(500 * time.Millisecond)
			}
			mustCreate(t, srv, token, map[string]any{"title": "after"})
		})
	}
}

func pgCtl(t *testing.T, stack neonStack, action string) {
	t.Helper()
	out, err := exec.Command("sh", "-c", stack.pgCtl+" "+action).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctl %s: %v\n%s", action, err, out)
	}
}

func portOf(t *testing.T, rawURL string) string {
	t.Helper()
	at := strings.Index(rawURL, "@")
	_, port, err := net.SplitHostPort(strings.SplitN(rawURL[at+1:], "/", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return port
}
