package main

// The centrifugo target: the same load against Centrifugo v6's
// unidirectional SSE (/connection/uni_sse), so that coursestream's figures
// have the reference its users compare it with, measured in the same run.
// A client connects with a token whose channels claim subscribes it to its
// course on the server side; the publisher numbers each course's events
// itself (Centrifugo has no ids without history) and puts the id in the
// data, where csload's id check finds it as it does in coursestream's
// envelope.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The secrets of the centrifugo a sweep starts (loopback only).
const (
	cfTokenKey = "csload-centrifugo-token-key"
	cfAPIKey   = "csload-centrifugo-api-key"
)

// centrifugoConfig writes the configuration of a centrifugo on addr
// (memory engine, or Redis at redisAddr) and returns its path.
func centrifugoConfig(addr, redisAddr string) string {
	host, port := addr, ""
	if i := bytes.LastIndexByte([]byte(addr), ':'); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	engine := `{"type": "memory"}`
	if redisAddr != "" {
		engine = fmt.Sprintf(`{"type": "redis", "redis": {"address": ["redis://%s"], "prefix": "csload-%d"}}`, redisAddr, time.Now().UnixNano()%1e9)
	}
	cfg := fmt.Sprintf(`{
  "http_server": {"address": %q, "port": %q},
  "log": {"level": "error"},
  "client": {"token": {"hmac_secret_key": %q}, "allowed_origins": ["*"]},
  "http_api": {"key": %q},
  "uni_sse": {"enabled": true},
  "health": {"enabled": true},
  "engine": %s
}`, host, port, cfTokenKey, cfAPIKey, engine)
	f, err := os.CreateTemp("", "csload-centrifugo-*.json")
	if err != nil {
		return ""
	}
	defer f.Close()
	_, _ = io.WriteString(f, cfg)
	return f.Name()
}

// centrifugoPath is the uni_sse request of a client of course.
func centrifugoPath(course string) string {
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "csload", "channels": []string{course}, "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString([]byte(cfTokenKey))
	return "/connection/uni_sse?cf_connect=" + url.QueryEscape(`{"token":"`+tok+`"}`)
}

// centrifugoFirst reports whether line is the connect reply Centrifugo
// writes once the subscription is in place.
func centrifugoFirst(line []byte) bool { return bytes.HasPrefix(line, []byte(`data: {"connect"`)) }

// centrifugoPublisher publishes over Centrifugo's HTTP API, numbering
// each course's events.
type centrifugoPublisher struct {
	base   string
	client *http.Client
	mu     sync.Mutex
	next   map[string]uint64
}

func newCentrifugoPublisher(base string, conns int) *centrifugoPublisher {
	return &centrifugoPublisher{base: base, next: map[string]uint64{}, client: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}}
}

func (p *centrifugoPublisher) publish(ctx context.Context, course string, data []byte) error {
	p.mu.Lock()
	p.next[course]++
	id := p.next[course]
	p.mu.Unlock()
	body := make([]byte, 0, len(data)+64+len(course))
	body = append(body, `{"channel":"`...)
	body = append(body, course...)
	body = append(body, `","data":{"id":"`...)
	body = strconv.AppendUint(body, id, 10)
	body = append(body, `",`...)
	body = append(body, data[1:]...) // data is {"t":...,"pad":"..."}
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", cfAPIKey)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: %d %s", resp.StatusCode, b)
	}
	return nil
}

func (p *centrifugoPublisher) close() { p.client.CloseIdleConnections() }
