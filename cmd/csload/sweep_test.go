package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestSweep runs csload sweep small against the real coursestream and the
// floor (this test binary as csload, started by the sweep): a report per
// target, point and run, the medians and the ratio in the table, and a
// plot with a point per report.
func TestSweep(t *testing.T) {
	bin := coursestreamBinary(t)
	t.Setenv(asCsloadEnv, "1") // the floor target runs os.Executable() floor
	dir := t.TempDir()
	svg := filepath.Join(dir, "plot.svg")
	var out bytes.Buffer
	err := run(context.Background(), []string{"sweep", "--cs", bin, "--targets", "coursestream,floor",
		"--points", "20,40", "--runs", "2", "--events", "3", "--rate", "50", "--settle", "0s",
		"--out", dir, "--svg", svg, "--timeout", "1m"}, &out)
	if err != nil {
		t.Fatalf("sweep: %v\n%s", err, out.String())
	}
	for _, target := range []string{"coursestream", "floor"} {
		for _, p := range []string{"20", "40"} {
			for _, r := range []string{"1", "2"} {
				b, err := os.ReadFile(filepath.Join(dir, target+"-"+p+"-"+r+".json"))
				if err != nil {
					t.Fatal(err)
				}
				var rep report
				if err := json.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
				if want := map[string]int{"20": 60, "40": 120}[p]; rep.Received != want || rep.Lost != 0 || rep.Label != target || rep.CPUPerDeliveryMicros == 0 && rep.ServerCPUSeconds != 0 {
					t.Errorf("%s %s run %s: received %d (want %d), lost %d, label %q", target, p, r, rep.Received, want, rep.Lost, rep.Label)
				}
			}
		}
	}
	table := out.String()
	for _, row := range []string{"| 20 | coursestream |", "| 20 | floor |", "| 20 | ratio |", "| 40 | ratio |", "ratio = coursestream / floor"} {
		if !strings.Contains(table, row) {
			t.Errorf("the table has no %q:\n%s", row, table)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte(`class="point"`)); n != 3*8 { // 3 panels, 8 reports
		t.Errorf("plot: %d points, want 24", n)
	}
	if err := xml.Unmarshal(b, new(struct{})); err != nil {
		t.Errorf("plot: not XML: %v", err)
	}
}

func TestSweepRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"sweep", "--targets", "coursestream"},                       // no --cs
		{"sweep", "--targets", "nginx"},                              // unknown target
		{"sweep", "--targets", "floor", "--points", "10,x"},          // a point that is no count
		{"sweep", "--targets", "floor", "--sweep-mode", "websocket"}, // no such load
		{"sweep", "--targets", "centrifugo"},                         // no --centrifugo
	} {
		err := run(context.Background(), args, io.Discard)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestCentrifugoTarget checks what csload sends a Centrifugo: a token
// whose channels claim holds the course, signed with the key the sweep's
// configuration gives it, and publishes numbering each course's events in
// the data, where the id check finds them.
func TestCentrifugoTarget(t *testing.T) {
	path := centrifugoPath("c7")
	q, ok := strings.CutPrefix(path, "/connection/uni_sse?cf_connect=")
	if !ok {
		t.Fatalf("path %q", path)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://x"+path, nil)
	var connect struct{ Token string }
	if err := json.Unmarshal([]byte(req.URL.Query().Get("cf_connect")), &connect); err != nil || q == "" {
		t.Fatalf("cf_connect: %v", err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(connect.Token, claims, func(*jwt.Token) (any, error) { return []byte(cfTokenKey), nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil {
		t.Fatalf("token: %v", err)
	}
	if ch, _ := claims["channels"].([]any); len(ch) != 1 || ch[0] != "c7" {
		t.Errorf("channels %v", claims["channels"])
	}
	if !centrifugoFirst([]byte(`data: {"connect":{"client":"x"}}`+"\n")) || centrifugoFirst([]byte("data: {}\n")) {
		t.Error("centrifugoFirst")
	}
	cfg, err := os.ReadFile(centrifugoConfig("127.0.0.1:18600", "127.0.0.1:6390"))
	if err != nil || !bytes.Contains(cfg, []byte(`"port": "18600"`)) || !bytes.Contains(cfg, []byte(`redis://127.0.0.1:6390`)) || !json.Valid(cfg) {
		t.Errorf("config: %v\n%s", err, cfg)
	}

	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/api/publish" || r.Header.Get("X-API-Key") != cfAPIKey {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		bodies = append(bodies, string(b))
		_, _ = io.WriteString(w, `{"result":{}}`)
	}))
	defer srv.Close()
	p := newCentrifugoPublisher(srv.URL, 1)
	defer p.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, course := range []string{"a", "a", "b"} {
		if err := p.publish(ctx, course, []byte(`{"t":5,"pad":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		`{"channel":"a","data":{"id":"1","t":5,"pad":"x"}}`,
		`{"channel":"a","data":{"id":"2","t":5,"pad":"x"}}`,
		`{"channel":"b","data":{"id":"1","t":5,"pad":"x"}}`,
	}
	if strings.Join(bodies, "\n") != strings.Join(want, "\n") {
		t.Errorf("published\n%s\nwant\n%s", strings.Join(bodies, "\n"), strings.Join(want, "\n"))
	}
	for _, b := range bodies {
		if id, _, ok := parseData([]byte(b)); !ok || id == 0 {
			t.Errorf("csload's id check finds no id in %s", b)
		}
	}
}
