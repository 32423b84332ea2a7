package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

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
	vectors := loadVectors(b)
	vec := vectors.Vectors[0]
	v := vectorVerifier(b, vectors.BaseURL, vec)
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
	handler := handlerOf(newServer(logger, testStore, newHS256Verifier(cfg.tokens.secret, "", "", ""), cfg, nil))
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

// BenchmarkStatements runs each of loadRuns (batch_test.go) on one
// connection over the load test's table, batches of 5: what PostgreSQL
// and the round trip cost one statement, planning included. The get
// batch's ns/op against five times the single get's is what coalescing
// five gets saves.
func BenchmarkStatements(b *testing.B) {
	ctx := context.Background()
	store := newStore(b, loadSizedDatabase(b), 1)
	// The arguments are made before timing: 64 draws of users, repeated.
	draws := make([][]loadRun, 64)
	for k := range draws {
		draws[k] = loadRuns(store, k, 5)
	}
	for i, r := range draws[0] {
		b.Run(r.name, func(b *testing.B) {
			for k := range b.N {
				if err := draws[k%len(draws)][i].exec(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
