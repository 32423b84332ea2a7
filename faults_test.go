package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

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
			base, stop, done, _, err := launchProgram(baseEnv(map[string]string{"DATABASE_URL": dsn}))
			if err != nil {
				t.Error(err)
				return
			}
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
