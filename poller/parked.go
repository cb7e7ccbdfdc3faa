package poller

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// Handback takes back a connection whose long-poll the poller took over
// from net/http, once the poll is answered: the client's next requests on
// it are served as on a new connection, so that keep-alive is kept. A
// Listener is one.
type Handback interface {
	// Handback serves c's next requests, or reports false (the server is
	// closing): the caller then closes c.
	Handback(c net.Conn) bool
}

const (
	// answerTimeout bounds the write of a taken-over poll's answer.
	answerTimeout = 10 * time.Second
	// maxPipelined is the most a client may send after a held long-poll
	// request (its next requests, pipelined) before it is cut off.
	maxPipelined = 16 << 10
)

// parked is a long-poll taken over from net/http while it waits: the
// request's handler has returned, and what is left of the poll is its
// connection, its listeners and one goroutine blocked reading the
// connection (run). That goroutine notices the client leaving (the read
// fails), the wake (the read deadline moved to the past) and the wait's
// end (the read deadline itself); it reads the news, writes the answer
// and hands the connection back to net/http. A held poll costs no
// net/http buffers, no handler stack, no timer.
type parked struct {
	p       *Poller
	lp      *longPoll
	conn    net.Conn
	ctx     context.Context // the broker reads': the token's expiry, if any, as the request had it
	cancel  context.CancelFunc
	end     time.Time   // the wait's end: ?wait=, or the token's expiry if sooner
	header  http.Header // the response's headers so far (Cache-Control, CORS)
	inm     string      // the request's If-None-Match
	last    answer      // the last read
	pending []byte      // what the client sent after its request
}

// takeOver parks lp, read once already (last), if the request allows it:
// plain HTTP/1.1, a GET with no body, the connection kept alive, and a
// Handback to return the connection to. It reports whether it did; if not
// the handler holds the poll.
func (p *Poller) takeOver(w http.ResponseWriter, r *http.Request, lp *longPoll, inm string, last answer) bool {
	if p.cfg.Handback == nil || r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 ||
		r.Method != http.MethodGet || r.Close || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return false
	}
	pk := &parked{p: p, lp: lp, header: w.Header().Clone(), inm: inm, last: last,
		end: time.Now().Add(lp.req.wait), ctx: context.Background(), cancel: func() {}}
	// Counted before the hijack: from the hijack on, http.Server.Shutdown
	// no longer waits for the request, and Wait must.
	p.count(pk)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.unpark(pk)
		return false // net/http cannot give the connection up: the handler holds it
	}
	pk.conn = conn
	if deadline, ok := r.Context().Deadline(); ok {
		pk.ctx, pk.cancel = context.WithDeadline(pk.ctx, deadline)
		if deadline.Before(pk.end) {
			pk.end = deadline
		}
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pk.pending = bytes.Clone(b)
	}
	pk.lp.watch(pk.conn, pk.end)
	if p.isDraining() { // Drain came before the watch: it woke no connection
		pk.lp.wake()
	}
	if p.onWait != nil {
		p.onWait()
	}
	go pk.run()
	return true
}

// count counts pk among the parked polls: Drain wakes them, Wait waits
// for them.
func (p *Poller) count(pk *parked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked == nil {
		p.parked = make(map[*parked]struct{})
	}
	p.parked[pk] = struct{}{}
}

// unpark forgets pk; the last one gone tells Wait.
func (p *Poller) unpark(pk *parked) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.parked, pk)
	if len(p.parked) == 0 && p.emptied != nil {
		close(p.emptied)
		p.emptied = nil
	}
}

// run is the parked poll's one goroutine; see parked. It ends with the
// poll (answered, or the client gone), owned by the Poller (Drain answers
// it, Wait waits for it).
func (pk *parked) run() {
	defer pk.p.unpark(pk)
	defer pk.cancel() // after the answer: a broker failure is a 503 only while ctx lives
	var b [64]byte
	for {
		n, err := pk.conn.Read(b[:])
		if pk.pending = append(pk.pending, b[:n]...); len(pk.pending) > maxPipelined {
			pk.finish()
			_ = pk.conn.Close()
			return
		}
		var ne net.Error
		switch {
		case err == nil:
			continue
		case errors.Is(err, io.EOF):
			// The client closed its side (gone, or a half-close after its
			// request): answered at once and closed, as net/http answers a
			// held poll whose client it sees leave.
			pk.answer(pk.last, nil, true)
			return
		case !errors.As(err, &ne) || !ne.Timeout():
			pk.finish() // the connection failed
			_ = pk.conn.Close()
			return
		}
		// The wake, Drain or the wait's end.
		if pk.lp.takeWake() {
			ans, err := pk.p.readOnce(pk.ctx, pk.lp.req)
			if err != nil || ans.found() {
				pk.answer(ans, err, false)
				return
			}
			pk.last = ans
		}
		if pk.p.isDraining() || !time.Now().Before(pk.end) {
			pk.answer(pk.last, nil, false)
			return
		}
		if pk.p.onWait != nil {
			pk.p.onWait()
		}
		pk.lp.watch(pk.conn, pk.end)
	}
}

// finish ends the poll's wake, listeners and count.
func (pk *parked) finish() {
	pk.lp.detach()
	pk.lp.close()
	pk.p.leave()
}

// answer writes the poll's answer as net/http would have (the same
// headers, a Content-Length), and hands the connection back, or closes it
// (closing, or the server is draining).
func (pk *parked) answer(ans answer, err error, closing bool) {
	pk.finish()
	rw := &rawResponse{header: pk.header}
	pk.p.respond(rw, pk.ctx, pk.lp.req, pk.inm, ans, err)
	closing = closing || pk.p.isDraining()
	if rw.status == 0 { // nothing to say (the token expired during a failed read)
		_ = pk.conn.Close()
		return
	}
	_ = pk.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	if _, err := pk.conn.Write(rw.bytes(closing)); err != nil || closing {
		_ = pk.conn.Close()
		return
	}
	_ = pk.conn.SetDeadline(time.Time{})
	c := pk.conn
	if len(pk.pending) > 0 {
		c = &prefixed{Conn: c, pending: pk.pending}
	}
	if !pk.p.cfg.Handback.Handback(c) {
		_ = c.Close()
	}
}

// rawResponse is the http.ResponseWriter of a taken-over poll: respond
// writes into it, and bytes gives them for the connection.
type rawResponse struct {
	header http.Header
	status int
	body   []byte
}

func (rw *rawResponse) Header() http.Header { return rw.header }

func (rw *rawResponse) WriteHeader(status int) {
	if rw.status == 0 {
		rw.status = status
	}
}

func (rw *rawResponse) Write(b []byte) (int, error) {
	rw.WriteHeader(http.StatusOK)
	rw.body = append(rw.body, b...)
	return len(b), nil
}

// bytes is the HTTP/1.1 response, as net/http's http.Response.Write
// puts it (status line, headers with a Content-Length where a body may be,
// Connection: close when closing), with the Date net/http's server adds.
func (rw *rawResponse) bytes(closing bool) []byte {
	rw.header.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	resp := &http.Response{
		StatusCode: rw.status, ProtoMajor: 1, ProtoMinor: 1, Header: rw.header, Close: closing,
		ContentLength: int64(len(rw.body)), Body: io.NopCloser(bytes.NewReader(rw.body)),
	}
	var buf bytes.Buffer
	buf.Grow(512 + len(rw.body))
	_ = resp.Write(&buf) // a bytes.Buffer takes every write
	return buf.Bytes()
}

// prefixed is a connection handed back with bytes its client sent while
// the poll was held (pipelined requests): they are read first.
type prefixed struct {
	net.Conn
	pending []byte
}

func (c *prefixed) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// SyscallConn is the connection's own, so that an SSE stream can still take
// it over (the stream ignores what the client sends).
func (c *prefixed) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
