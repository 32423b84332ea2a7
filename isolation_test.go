package main

import (
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// TestRandomizedIsolation: 20 users at once perform thousands of random
// operations on their own tasks and on other users' ids. Each user keeps a
// model of what it owns; nobody may ever see, change or delete another's
// task, and at the end the database must equal the models exactly. It
// runs on a pool with a connection for each user, and on one of two
// connections, where gets, creates, changes and lists share statements.
func TestRandomizedIsolation(t *testing.T) {
	t.Parallel()
	t.Run("wide pool", func(t *testing.T) {
		t.Parallel()
		checkRandomizedIsolation(t, testStore)
	})
	t.Run("batching", func(t *testing.T) {
		t.Parallel()
		store := newStore(t, nil, 2)
		checkRandomizedIsolation(t, store)
		for _, op := range []string{"get", "create", "change", "list"} {
			statements, shared := batchesOf(store, op)
			if shared == 0 {
				t.Errorf("%s: %d statements for waiting requests, none shared: no batch formed", op, statements)
			}
			t.Logf("%s: %d statements for waiting requests, %d of them shared", op, statements, shared)
		}
	})
}

func checkRandomizedIsolation(t *testing.T, store *Store) {
	srv := newTestServer(t, testConfig(), store)
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
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = mustToken(t, ids[i])
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
			token := tokens[u]
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
			// This goroutine is not the test's: a failure is reported
			// through fail, never t.Fatal.
			send := func(method, path string, body any) response {
				res, err := srv.do(method, path, token, body)
				if err != nil {
					fail("%v", err)
				}
				return res
			}
			taskOf := func(res response) taskJSON {
				task, err := parseTask(res)
				if err != nil {
					fail("%v", err)
				}
				return task
			}
			tasksOf := func(res response) []taskJSON {
				tasks, err := parseTasks(res)
				if err != nil {
					fail("%v", err)
				}
				return tasks
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
					res := send("POST", "/api/tasks", map[string]any{"title": title, "description": desc})
					if res.status != http.StatusCreated {
						fail("create = %s", res)
						continue
					}
					task := taskOf(res)
					own[task.ID] = modelTask{title: title, description: desc}
					registry.Store(task.ID, u)
				case 2: // read own
					if id, ok := anyOwn(); ok {
						res := send("GET", taskPath(id), nil)
						if res.status != http.StatusOK || taskOf(res).Title != own[id].title {
							fail("get own %d = %s; want %+v", id, res, own[id])
						}
					}
				case 3: // update own
					if id, ok := anyOwn(); ok {
						m := own[id]
						m.title, m.completed = m.title+"'", !m.completed
						res := send("PUT", taskPath(id), map[string]any{"title": m.title, "completed": m.completed})
						if res.status != http.StatusOK {
							fail("update own %d = %s", id, res)
						}
						own[id] = m
					}
				case 4: // delete own
					if id, ok := anyOwn(); ok {
						if res := send("DELETE", taskPath(id), nil); res.status != http.StatusNoContent {
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
						res = send("GET", taskPath(id), nil)
					case 1:
						res = send("PUT", taskPath(id), map[string]any{"title": "stolen"})
					case 2:
						res = send("PATCH", taskPath(id)+"/complete", map[string]any{"completed": true})
					default:
						res = send("DELETE", taskPath(id), nil)
					}
					if res.status != http.StatusNotFound {
						fail("touching another user's task %d = %s; want 404", id, res)
					}
				case 7: // list: exactly the model
					list := tasksOf(send("GET", "/api/tasks", nil))
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
