package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The list path against the real program, over real sockets: clients that
// read slowly or not at all, long lists, and a drain with a stuck client.
// Each runs on a database of its own, so that its quotas and its locks are
// nobody else's.

// seedMaximalTasks stores count tasks for userID whose descriptions are
// 10,000 U+0001 characters: each is about 60 KB of JSON (\u0001).
func seedMaximalTasks(t *testing.T, dsn, userID string, count int) {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO tasks (user_id, title, description)
		SELECT $1, 'maximal ' || g, repeat(chr(1), 10000) FROM generate_series(1, $2) AS g`, userID, count); err != nil {
		t.Fatal(err)
	}
}

// startOwnProgram runs the real program on a database of its own, with
// env's settings, for the rest of the test. It returns the program and the
// database's DSN.
func startOwnProgram(t *testing.T, env map[string]string) (*testServer, string) {
	t.Helper()
	env["DATABASE_URL"], env["RATE_LIMIT_RPS"] = createDatabase(t), "0"
	return serveProgram(t, baseEnv(env)), env["DATABASE_URL"]
}

// stuckLister sends GET path for token on a connection of its own and
// reads nothing of the answer. Its receive buffer is fixed (the kernel
// would grow it to tens of megabytes): 4 KiB with small, else 256 KiB,
// which a client reading on afterwards empties quickly.
func stuckLister(t *testing.T, base, path, token string, small bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	buffer := 256 << 10
	if small {
		buffer = 4096
	}
	c.(*net.TCPConn).SetReadBuffer(buffer)
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", path, token); err != nil {
		t.Fatal(err)
	}
	return c
}

// smallBufferTransport's connections have a receive buffer of 128 KiB, so
// that the server's writes keep pace with what the test reads rather
// than with what the kernel will buffer.
var smallBufferTransport = &http.Transport{
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			c.(*net.TCPConn).SetReadBuffer(128 << 10)
		}
		return c, err
	},
}

// readList reads GET /api/tasks for token at about bytesPerSecond, and
// returns the tasks, or why it could not.
func readList(base, token string, bytesPerSecond int) ([]taskJSON, error) {
	req, err := http.NewRequest("GET", base+"/api/tasks", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := smallBufferTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		return nil, fmt.Errorf("status %d: %s", res.StatusCode, body)
	}
	const chunk = 16 << 10
	var body strings.Builder
	r := bufio.NewReaderSize(res.Body, chunk)
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(r, buf)
		body.Write(buf[:n])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("after %d bytes: %w", body.Len(), err)
		}
		time.Sleep(time.Second * chunk / time.Duration(bytesPerSecond))
	}
	var tasks []taskJSON
	if err := json.Unmarshal([]byte(body.String()), &tasks); err != nil {
		return nil, fmt.Errorf("%d bytes that are not a whole list: %w", body.Len(), err)
	}
	return tasks, nil
}

// wantEachOnce checks that tasks are count tasks seeded by
// seedMaximalTasks, newest first, none twice.
func wantEachOnce(t *testing.T, tasks []taskJSON, count int) {
	t.Helper()
	seen := map[int64]bool{}
	for _, task := range tasks {
		if seen[task.ID] {
			t.Errorf("task %d listed twice", task.ID)
		}
		seen[task.ID] = true
	}
	if len(seen) != count {
		t.Errorf("%d distinct tasks; want %d", len(seen), count)
	}
}

// TestNonReadingClientsCostOthersNothing: one user opens as many list
// requests as the pool has connections, on lists of megabytes, and reads
// none of them. Another user's requests and /readyz are still answered at
// once: no list holds a connection while its client does not read.
func TestNonReadingClientsCostOthersNothing(t *testing.T) {
	t.Parallel()
	program, dsn := startOwnProgram(t, map[string]string{"DB_MAX_CONNS": "4", "DB_TIMEOUT": "2s"})
	base := program.URL
	attacker := newUser(t)
	seedMaximalTasks(t, dsn, attacker, 400)
	for range 4 {
		stuckLister(t, base, "/api/tasks", mustToken(t, attacker), true)
	}
	time.Sleep(500 * time.Millisecond) // every answer is stuck in its socket by now
	srv := &testServer{Server: &httptest.Server{URL: base}}
	victim := mustToken(t, newUser(t))
	mustCreate(t, srv, victim, map[string]any{"title": "mine"})
	deadline := time.Now().Add(3 * time.Second) // past DB_TIMEOUT
	for time.Now().Before(deadline) {
		if res := srv.request(t, "GET", "/api/tasks?limit=1", victim, nil); res.status != http.StatusOK {
			t.Fatalf("another user's list beside 4 stuck ones: %s", res)
		}
		if res := srv.request(t, "GET", "/readyz", "", nil); res.status != http.StatusOK {
			t.Fatalf("/readyz beside 4 stuck lists: %s", res)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSlowReaderGetsALongListPastDBTimeout: a list that takes its client
// several times DB_TIMEOUT to read arrives whole.
func TestSlowReaderGetsALongListPastDBTimeout(t *testing.T) {
	t.Parallel()
	program, dsn := startOwnProgram(t, map[string]string{"DB_TIMEOUT": "500ms"})
	base := program.URL
	user := newUser(t)
	seedMaximalTasks(t, dsn, user, 100) // about 6 MB of JSON: 3 s at 2 MB/s
	start := time.Now()
	tasks, err := readList(base, mustToken(t, user), 2<<20)
	if err != nil {
		t.Fatalf("a slow reader's list, after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	wantEachOnce(t, tasks, 100)
}

// TestConcurrentLongLists: eight long lists at once, read at a modest
// rate, on a pool of two connections with a short DB_TIMEOUT: all arrive
// whole, and none waits on another's client.
func TestConcurrentLongLists(t *testing.T) {
	t.Parallel()
	program, dsn := startOwnProgram(t, map[string]string{"DB_MAX_CONNS": "2", "DB_TIMEOUT": "1s"})
	base := program.URL
	users := make([]string, 4)
	for i := range users {
		users[i] = newUser(t)
		seedMaximalTasks(t, dsn, users[i], 100) // about 6 MB each, more than a socket buffers
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	got := make([][]taskJSON, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = readList(base, mustToken(t, users[i%4]), 3<<20)
		}()
	}
	wg.Wait()
	for i := range 8 {
		if errs[i] != nil {
			t.Errorf("list %d: %v", i, errs[i])
			continue
		}
		wantEachOnce(t, got[i], 100)
	}
}

// TestStalledClientIsCut: a client that takes none of a long answer for
// CLIENT_STALL_TIMEOUT is cut: reading on afterwards, it finds the
// connection closed before the list is complete.
func TestStalledClientIsCut(t *testing.T) {
	t.Parallel()
	program, dsn := startOwnProgram(t, map[string]string{"CLIENT_STALL_TIMEOUT": "1s"})
	user := newUser(t)
	seedMaximalTasks(t, dsn, user, 200) // 12 MB: more than the sockets' buffers hold
	c := stuckLister(t, program.URL, "/api/tasks", mustToken(t, user), false)
	// However long the server takes to fill the sockets' buffers, the
	// stall is measured from then: wait for the cut, not for a time.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(program.logs.String(), "the client stopped reading"); {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled client was not cut within 30 s:\n%s", program.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no status line: %v", err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	if err == nil {
		t.Fatalf("read a whole answer of %d bytes after the server cut the stalled client", n)
	}
	if isTimeout(err) {
		t.Fatalf("the connection was still open 10 s after the cut, after %d bytes", n)
	}
}

// TestDrainWithAStuckReader: SIGTERM (here, run's context) while a client
// takes none of its list: the program still ends within SHUTDOWN_TIMEOUT,
// with no error, and cuts that client; a request begun before is served.
func TestDrainWithAStuckReader(t *testing.T) {
	t.Parallel()
	dsn := createDatabase(t)
	env := baseEnv(map[string]string{"DATABASE_URL": dsn, "SHUTDOWN_TIMEOUT": "3s", "CLIENT_STALL_TIMEOUT": "1m"})
	base, stop, done, logs := startProgram(t, env)
	user := newUser(t)
	seedMaximalTasks(t, dsn, user, 200)
	stuckLister(t, base, "/api/tasks", mustToken(t, user), true)
	srv := &testServer{Server: &httptest.Server{URL: base}}
	token := mustToken(t, newUser(t))
	mustCreate(t, srv, token, map[string]any{"title": "before the signal"})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after SIGTERM with a stuck reader: %v\n%s", err, logs)
		}
		if took := time.Since(start); took > 3*time.Second+time.Second {
			t.Errorf("the drain took %v; want at most SHUTDOWN_TIMEOUT (3s)", took)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return 20 s after SIGTERM")
	}
}

// TestListGuaranteesUnderConcurrentWrites: while a long list is read page
// by page, other requests create, rename and delete tasks of the same
// user. Every task that existed unchanged for the whole request is listed
// exactly once, and no task twice, in both orders.
func TestListGuaranteesUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	for _, order := range []string{"", "?sort=title"} {
		t.Run("order"+order, func(t *testing.T) {
			user := newUser(t)
			cfg := testConfig()
			store, _, cfg := ownTasksStore(t, cfg, user, 60) // several pages
			ctx := context.Background()
			all, err := listThrough(ctx, store, user, listFilter{})
			if err != nil {
				t.Fatal(err)
			}
			var before []taskJSON
			if err := json.Unmarshal([]byte(all), &before); err != nil {
				t.Fatal(err)
			}
			// Tasks with an even index stay untouched. Once the first page
			// is out, a quarter are renamed to sort last (in title order,
			// past the cursor: those already listed come round again);
			// after the second page, an eighth are deleted; after the
			// third, another eighth are renamed to sort first; and a new
			// task arrives at every page.
			untouched := map[int64]bool{}
			for i, task := range before {
				if i%2 == 0 {
					untouched[task.ID] = true
				}
			}
			pages := 0
			w := &hookedWriter{chunkRecorder: chunkRecorder{header: http.Header{}}, before: func(n int) {
				pages++
				for i, task := range before {
					var err error
					switch {
					case i%2 == 0:
					case n == 0 && i%4 == 3:
						_, err = store.UpdateTask(ctx, user, task.ID, taskUpdate{title: ptr(fmt.Sprint("zzz last ", i))}, nil)
					case n == 1 && i%8 == 1:
						err = store.DeleteTask(ctx, user, task.ID, nil)
					case n == 2 && i%8 == 5:
						_, err = store.UpdateTask(ctx, user, task.ID, taskUpdate{title: ptr(fmt.Sprint("aaa first ", i))}, nil)
					}
					if err != nil {
						t.Error(err)
					}
				}
				if _, err := store.CreateTask(ctx, user, taskInput{title: fmt.Sprint("new ", n)}); err != nil {
					t.Error(err)
				}
			}}
			handler := handlerOf(newServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), store, newHS256Verifier([]byte(testSecret), "", "", ""), cfg, nil))
			req := httptest.NewRequest("GET", "/api/tasks"+order, nil)
			req.Header.Set("Authorization", "Bearer "+mustToken(t, user))
			handler.ServeHTTP(w, req)
			var got []taskJSON
			if err := json.Unmarshal(w.body.Bytes(), &got); err != nil {
				t.Fatalf("%d writes: %v", w.writes, err)
			}
			if pages < 3 {
				t.Fatalf("the list came in %d pages; the test needs several", pages)
			}
			seen := map[int64]int{}
			for _, task := range got {
				seen[task.ID]++
			}
			for id, n := range seen {
				if n > 1 {
					t.Errorf("task %d listed %d times", id, n)
				}
			}
			for id := range untouched {
				if seen[id] != 1 {
					t.Errorf("task %d, untouched throughout, listed %d times", id, seen[id])
				}
			}
		})
	}
}

// TestListSpellingsFrontendsSend: the sort, direction and filter
// spellings of the frontends in the wild, through both route shapes, each
// in every order it names, across several pages; two spellings of one
// parameter, or a value that is none of them, stay 422.
func TestListSpellingsFrontendsSend(t *testing.T) {
	t.Parallel()
	user := newUser(t)
	cfg := testConfig()
	store, _, cfg := ownTasksStore(t, cfg, user, 0)
	srv := newTestServer(t, cfg, store)
	token := mustToken(t, user)
	long := strings.Repeat("d", maxDescriptionRunes)
	// Titles that sort differently from creation, two alike but for case,
	// and enough text for several pages.
	for i := range 24 {
		body := map[string]any{"title": fmt.Sprintf("%c task", 'a'+(i*7)%24), "description": long, "completed": i%3 == 0}
		if i == 5 {
			body["title"] = "B task"
		}
		mustCreate(t, srv, token, body)
	}
	newest := decodeTasks(t, srv.request(t, "GET", "/api/tasks", token, nil))
	if len(newest) != 24 {
		t.Fatalf("default list has %d tasks", len(newest))
	}
	reversed := func(list []taskJSON) []taskJSON {
		out := slices.Clone(list)
		slices.Reverse(out)
		return out
	}
	byTitle := slices.Clone(newest)
	slices.SortStableFunc(byTitle, func(a, b taskJSON) int {
		if c := strings.Compare(strings.ToLower(a.Title), strings.ToLower(b.Title)); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	ids := func(list []taskJSON) []int64 {
		var out []int64
		for _, task := range list {
			out = append(out, task.ID)
		}
		return out
	}
	filtered := func(list []taskJSON, completed bool) []taskJSON {
		var out []taskJSON
		for _, task := range list {
			if task.Completed == completed {
				out = append(out, task)
			}
		}
		return out
	}
	for _, c := range []struct {
		query string
		want  []taskJSON
	}{
		{"sort=created_at", newest},
		{"sort=created:desc", newest},
		{"sort=created_at&order=desc", newest},
		{"sort=created&sort_order=desc", newest},
		{"sort=created:asc", reversed(newest)},
		{"sort=created_at&order=asc", reversed(newest)},
		{"order=asc", reversed(newest)},
		{"sort=title", byTitle},
		{"sort=title:asc", byTitle},
		{"sort=title:desc", reversed(byTitle)},
		{"sort=title&order=desc", reversed(byTitle)},
		{"task_status=all", newest},
		{"task_status=pending", filtered(newest, false)},
		{"task_status=completed&sort=title:desc", filtered(reversed(byTitle), true)},
		{"is_complete=true", filtered(newest, true)},
		{"is_completed=false&order=asc", filtered(reversed(newest), false)},
		{"completed=true&sort=created:asc&limit=3&offset=1", filtered(reversed(newest), true)[1:4]},
	} {
		for _, path := range []string{"/api/tasks?", userPath(user, "?")} {
			got := decodeTasks(t, srv.request(t, "GET", path+c.query, token, nil))
			if !slices.Equal(ids(got), ids(c.want)) {
				t.Errorf("%s%s: ids %v; want %v", path, c.query, ids(got), ids(c.want))
			}
		}
	}
	for _, c := range []struct{ query, field string }{
		{"status=all&task_status=all", "task_status"},
		{"completed=true&is_complete=true", "is_complete"},
		{"is_complete=true&is_completed=true", "is_completed"},
		{"task_status=pending&is_complete=false", "task_status"},
		{"sort=title:asc&order=desc", "order"},
		{"order=asc&sort_order=asc", "sort_order"},
		{"sort=created:up", "sort"},
		{"sort=updated_at", "sort"},
		{"order=DESC", "sort"},
		{"is_complete=yes", "is_complete"},
		{"task_status=done", "task_status"},
	} {
		for _, path := range []string{"/api/tasks?", userPath(user, "?")} {
			res := srv.request(t, "GET", path+c.query, token, nil)
			wantError(t, res, http.StatusUnprocessableEntity, codeValidation)
			if !strings.Contains(string(res.body), `"field":"`+c.field+`"`) {
				t.Errorf("%s%s: 422 does not name %s: %s", path, c.query, c.field, res.body)
			}
		}
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

// serveListInProcess serves GET /api/tasks for token through the whole
// handler stack straight into w, with no network in between, so that w
// sees every Write the handler makes.
func serveListInProcess(cfg config, store *Store, token string, w http.ResponseWriter) {
	handler := handlerOf(newServer(slog.New(slog.NewJSONHandler(io.Discard, nil)), store, newHS256Verifier([]byte(testSecret), "", "", ""), cfg, nil))
	req := httptest.NewRequest("GET", "/api/tasks", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	handler.ServeHTTP(w, req)
}

// TestLongListIsStreamedInBoundedChunks: a list far larger than one chunk
// goes out in writes of about listPageBytes, never built whole, and is
// still one valid JSON array; a short one is one write with its length.
func TestLongListIsStreamedInBoundedChunks(t *testing.T) {
	t.Parallel()
	user := newUser(t)
	token := mustToken(t, user)
	srv := newTestServer(t, testConfig(), testStore)
	longest := strings.Repeat("d", maxDescriptionRunes)
	mustCreate(t, srv, token, map[string]any{"title": "short"})
	get := func() *chunkRecorder {
		rec := &chunkRecorder{header: http.Header{}}
		serveListInProcess(testConfig(), testStore, token, rec)
		return rec
	}
	if rec := get(); rec.writes != 1 || rec.header.Get("Content-Length") == "" {
		t.Errorf("a short list took %d writes, Content-Length %q; want 1 write with a length", rec.writes, rec.header.Get("Content-Length"))
	}
	// More rows than a first page reads, but well under a page of JSON:
	// still one write with its length.
	for i := range firstPageRows + 50 {
		if _, err := testStore.CreateTask(context.Background(), user, taskInput{title: fmt.Sprint("small ", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if rec := get(); rec.writes != 1 || rec.header.Get("Content-Length") == "" {
		t.Errorf("a list of %d short tasks took %d writes, Content-Length %q; want 1 write with a length", firstPageRows+51, rec.writes, rec.header.Get("Content-Length"))
	}
	const tasks = 100 // about 1 MB
	for i := 0; i < tasks; i++ {
		mustCreate(t, srv, token, map[string]any{"title": fmt.Sprint("long ", i), "description": longest})
	}
	rec := get()
	if rec.status != http.StatusOK {
		t.Fatalf("status %d", rec.status)
	}
	if bound := listPageBytes + len(longest) + 512; rec.maxWrite > bound || rec.writes < rec.body.Len()/bound {
		t.Errorf("a %d-byte list went out in %d writes of at most %d bytes; want about %d-byte chunks", rec.body.Len(), rec.writes, rec.maxWrite, listPageBytes)
	}
	var list []taskJSON
	if err := json.Unmarshal(rec.body.Bytes(), &list); err != nil || len(list) != tasks+firstPageRows+51 {
		t.Errorf("the streamed list is %d tasks, %v; want %d in one array", len(list), err, tasks+firstPageRows+51)
	}
}

// ownTasksStore is a store on a database of the test's own, with the
// schema, count tasks of 10,000 characters for userID, and cfg's
// DB_TIMEOUT; cfg is returned as the store's server should have it.
func ownTasksStore(t *testing.T, cfg config, userID string, count int) (*Store, *sql.DB, config) {
	t.Helper()
	dsn, db := openSchemaDatabase(t)
	cfg.databaseURL = dsn
	store := openServerStore(t, cfg)
	long := strings.Repeat("d", maxDescriptionRunes)
	for i := range count {
		if _, err := store.CreateTask(context.Background(), userID, taskInput{title: fmt.Sprint("long ", i), description: &long}); err != nil {
			t.Fatal(err)
		}
	}
	return store, db, cfg
}

// TestStreamedListCutOffMidwayIsNotComplete: when a page's database work
// fails after part of a list is out, the handler aborts (net/http then
// cuts the connection before the final chunk) instead of closing the JSON
// array.
func TestStreamedListCutOffMidwayIsNotComplete(t *testing.T) {
	t.Parallel()
	user := newUser(t)
	cfg := testConfig()
	cfg.dbTimeout = 200 * time.Millisecond
	store, db, cfg := ownTasksStore(t, cfg, user, 40)
	// Once the first page is out, the table is locked: the next page's
	// read waits past DB_TIMEOUT and fails.
	w := &hookedWriter{chunkRecorder: chunkRecorder{header: http.Header{}}, before: func(n int) {
		if n != 0 {
			return
		}
		tx, err := db.Begin()
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { tx.Rollback() })
		if _, err := tx.Exec("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Error(err)
		}
	}}
	aborted := func() (v any) {
		defer func() { v = recover() }()
		serveListInProcess(cfg, store, mustToken(t, user), w)
		return nil
	}()
	if aborted != http.ErrAbortHandler {
		t.Fatalf("a list whose database work failed midway ended with %v after %d bytes; want http.ErrAbortHandler", aborted, w.body.Len())
	}
	if w.writes == 0 || bytes.HasSuffix(bytes.TrimSpace(w.body.Bytes()), []byte("]")) {
		t.Errorf("%d writes, body ends %q; want part of an array, unclosed", w.writes, w.body.Bytes()[max(0, w.body.Len()-10):])
	}
}

// TestSlowClientGetsTheWholeList: a client that takes longer than
// DB_TIMEOUT to take each page still gets the whole list: DB_TIMEOUT
// bounds database work, and no page's statement is open while the client
// reads.
func TestSlowClientGetsTheWholeList(t *testing.T) {
	t.Parallel()
	user := newUser(t)
	cfg := testConfig()
	cfg.dbTimeout = time.Second
	store, _, cfg := ownTasksStore(t, cfg, user, 12) // about 120 KB: two pages and the end
	w := &hookedWriter{chunkRecorder: chunkRecorder{header: http.Header{}}, before: func(int) { time.Sleep(cfg.dbTimeout + 100*time.Millisecond) }}
	serveListInProcess(cfg, store, mustToken(t, user), w)
	var list []taskJSON
	if err := json.Unmarshal(w.body.Bytes(), &list); err != nil || len(list) != 12 || w.writes < 2 {
		t.Fatalf("%d tasks in %d writes, %v; want all 12 in several pages", len(list), w.writes, err)
	}
	for i, task := range list {
		if want := fmt.Sprint("long ", 11-i); task.Title != want {
			t.Fatalf("task %d is %q; want %q (newest first, each once)", i, task.Title, want)
		}
	}
}

// chunkRecorder is a ResponseWriter that keeps the body and the size of
// its largest Write.
type chunkRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	writes   int
	maxWrite int
}

func (c *chunkRecorder) Header() http.Header  { return c.header }
func (c *chunkRecorder) WriteHeader(code int) { c.status = code }
func (c *chunkRecorder) Write(b []byte) (int, error) {
	c.writes++
	c.maxWrite = max(c.maxWrite, len(b))
	return c.body.Write(b)
}

// hookedWriter is a chunkRecorder that calls before(n) ahead of its n-th
// Write, counted from 0.
type hookedWriter struct {
	chunkRecorder
	before func(n int)
}

func (h *hookedWriter) Write(b []byte) (int, error) {
	h.before(h.writes)
	return h.chunkRecorder.Write(b)
}

// TestListStatusAndSort: status and sort on both shapes, and their 422s.
func TestListStatusAndSort(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, testConfig(), testStore)
	user := newUser(t)
	token := mustToken(t, user)
	for _, title := range []string{"banana", "Apple", "cherry", "apple"} {
		mustCreate(t, srv, token, map[string]any{"title": title, "completed": title == "cherry"})
	}
	titles := func(path string) string {
		t.Helper()
		var got []string
		for _, task := range decodeTasks(t, srv.request(t, "GET", path, token, nil)) {
			got = append(got, task.Title)
		}
		return strings.Join(got, ",")
	}
	for _, prefix := range []string{"/api/tasks", userPath(user, "")} {
		cases := map[string]string{
			"":                             "apple,cherry,Apple,banana",
			"?sort=created":                "apple,cherry,Apple,banana",
			"?sort=title":                  "Apple,apple,banana,cherry",
			"?status=all&sort=title":       "Apple,apple,banana,cherry",
			"?status=pending&sort=title":   "Apple,apple,banana",
			"?status=completed":            "cherry",
			"?status=pending":              "apple,Apple,banana",
			"?sort=title&limit=2&offset=1": "apple,banana",
		}
		for query, want := range cases {
			if got := titles(prefix + query); got != want {
				t.Errorf("GET %s%s = %s; want %s", prefix, query, got, want)
			}
		}
		for _, query := range []string{
			"?status=done", "?status=", "?sort=name", "?sort=", "?status=all&completed=true",
			"?completed=maybe&status=pending", "?status=all&status=all", "?sort=title&sort=title",
			"?limit=1;limit=2", "?sort=title;x", "?status=pending%3Bx",
		} {
			wantError(t, srv.request(t, "GET", prefix+query, token, nil), http.StatusUnprocessableEntity, codeValidation)
		}
	}
}
