package main

// The servers csload starts itself (csload scale's instances, csload
// sweep's targets): a process on a free loopback port, ready once it
// answers, killed at the end or with csload.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// instance is a server csload loads: started here (cmd set) or given.
type instance struct {
	url    string
	pid    int
	cmd    *exec.Cmd     // nil when given
	exited chan struct{} // closed when cmd has exited
}

func (in *instance) kill() {
	if in.cmd != nil {
		_ = in.cmd.Process.Kill()
		<-in.exited
	}
}

// startProcess starts the process argv(addr) on a free loopback address
// and waits until GET path answers 200 (readiness: coursestream's /readyz,
// centrifugo's /health, the floor's first poll); the process is killed
// with its parent, too.
func startProcess(ctx context.Context, argv func(addr string) []string, useTLS bool, path string) (*instance, error) {
	var lastErr error
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr := l.Addr().String()
		l.Close()
		args := argv(addr)
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		scheme := "http://"
		if useTLS {
			scheme = "https://"
		}
		in := &instance{url: scheme + addr, pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{})}
		go func() {
			_ = cmd.Wait()
			close(in.exited)
		}()
		if lastErr = waitOK(ctx, in.url+path, in.exited); lastErr == nil {
			return in, nil
		}
		in.kill()
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// waitOK polls url until it answers 200 (a starting server has no event
// to wait on), for at most 30 s, or until exited is closed (nil: never).
func waitOK(ctx context.Context, url string, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // a load tool's own loopback server
	}}
	defer hc.CloseIdleConnections()
	bound := time.After(30 * time.Second)
	last := errors.New("not answering")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := hc.Do(req); err != nil {
			last = err
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return fmt.Errorf("exited before answering (%v)", last)
		case <-bound:
			return fmt.Errorf("not answering after 30s: %v", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
