package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// protocols are the --proto values of idle mode: how each stream reaches
// the server, one TCP connection per stream.
var protocols = map[string]proto{
	"h1":    {major: 1},            // HTTP/1.1 over TCP: the stream is taken over from net/http
	"h1tls": {tls: true, major: 1}, // HTTP/1.1 over TLS: written through the ResponseWriter
	"h2":    {tls: true, h2: true, major: 2},
}

// proto is how a stream reaches the server.
type proto struct {
	tls, h2 bool
	major   int
}

// runIdle opens c.Clients idle SSE streams, each on its own connection
// (as the browsers of different users hold them) over c.Proto, waits
// c.Settle, and reports the server's RSS per connection: what an idle
// stream costs on that path. The certificate of an https server is not
// checked (a load tool on loopback).
func runIdle(ctx context.Context, c config) (*report, error) {
	p, ok := protocols[c.Proto]
	if !ok {
		return nil, usageError{fmt.Errorf("--proto %q: want h1, h1tls or h2", c.Proto)}
	}
	bases, _ := parseServers(c.Server)
	base := bases[0]
	if (base.Scheme == "https") != p.tls {
		return nil, usageError{fmt.Errorf("--proto %s wants an %s --server, got %s", c.Proto, map[bool]string{true: "https://", false: "http://"}[p.tls], base)}
	}
	rep := &report{Mode: "idle " + c.Proto, Clients: c.Clients, Courses: c.Courses}
	proc := newProc(c.PID)
	rssBefore := proc.rss()

	var (
		mu      sync.Mutex
		bodies  []io.Closer
		connect []time.Duration
		wg      sync.WaitGroup
		firstEr error
	)
	defer func() {
		mu.Lock()
		for _, b := range bodies {
			_ = b.Close()
		}
		mu.Unlock()
		wg.Wait() // every reader ends with its body
	}()
	tick := time.NewTicker(time.Second / time.Duration(c.Ramp))
	defer tick.Stop()
	start := time.Now()
	var dials sync.WaitGroup
	for i := range c.Clients {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			url := base.String() + "/v1/courses/" + c.CoursePfx + strconv.Itoa(i%c.Courses) + "/events"
			took, _, body, err := openStream(ctx, url, c.Token, "", p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.ConnectFailed++
				if firstEr == nil {
					firstEr = err
				}
				return
			}
			rep.Connected++
			connect = append(connect, took)
			bodies = append(bodies, body)
			wg.Add(1)
			go func() { // heartbeats are read and dropped until the body is closed
				defer wg.Done()
				_, _ = io.Copy(io.Discard, body)
			}()
		}()
	}
	dials.Wait()
	rep.ConnectSeconds = time.Since(start).Seconds()
	rep.ConnectP50, rep.ConnectP99 = pct(connect, 50), pct(connect, 99)
	if rep.Connected == 0 {
		return rep, fmt.Errorf("no stream opened: %w", firstEr)
	}
	select {
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(c.Settle):
	}
	if rssAfter := proc.rss(); rssAfter > 0 {
		rep.ServerRSSMiB = float64(rssAfter) / (1 << 20)
		rep.RSSPerConnKiB = float64(rssAfter-rssBefore) / float64(rep.Connected) / 1024
	}
	if rep.ConnectFailed > 0 {
		return rep, fmt.Errorf("%d streams did not open, the first: %w", rep.ConnectFailed, firstEr)
	}
	return rep, nil
}

// openStream opens one stream on a connection of its own over p, with
// Last-Event-ID lastID unless empty, and reads its first frame (retry:).
// The body is the caller's to read, from the reader returned, and to close.
func openStream(ctx context.Context, url, token, lastID string, p proto) (time.Duration, *bufio.Reader, io.ReadCloser, error) {
	tr := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true, MaxIdleConns: 1}
	if p.tls {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // loopback load: the server's own test certificate
	}
	if p.h2 {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != p.major {
		resp.Body.Close()
		tr.CloseIdleConnections()
		return 0, nil, nil, fmt.Errorf("GET %s: %s over %s, want 200 over HTTP/%d", url, resp.Status, resp.Proto, p.major)
	}
	br := bufio.NewReaderSize(resp.Body, 4096)
	line, err := br.ReadString('\n') // retry:, the first frame
	if err != nil || len(line) < len("retry: ") || line[:len("retry: ")] != "retry: " {
		resp.Body.Close()
		tr.CloseIdleConnections()
		return 0, nil, nil, errors.Join(fmt.Errorf("GET %s: no retry: frame first (%q)", url, line), err)
	}
	return time.Since(start), br, closeTransport{resp.Body, tr}, nil
}

// closeTransport closes the stream's body and then its transport's
// connection.
type closeTransport struct {
	io.ReadCloser
	tr *http.Transport
}

func (c closeTransport) Close() error {
	err := c.ReadCloser.Close()
	c.tr.CloseIdleConnections()
	return err
}
