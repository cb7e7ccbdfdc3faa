package poller

import (
	"errors"
	"net"
	"testing"
)

// A Listener gives new and handed-back connections to Accept; once it is
// closed, Accept fails with net.ErrClosed, a hand-back is refused (the
// caller closes the connection) and its accept loop is gone (goleak).
func TestListenerAcceptsHandedBackConnections(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(tcp)
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	back := make(chan bool)
	go func() { back <- l.Handback(server) }()
	again, err := l.Accept()
	if err != nil || again != server {
		t.Fatalf("Accept after Handback: %v, %v; want the handed-back connection", again, err)
	}
	if !<-back {
		t.Fatal("Handback reported false on an open listener")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if l.Handback(server) {
		t.Fatal("Handback after Close reported true")
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// When the inner listener fails for good, Accept returns its error (and
// http.Server.Serve returns it).
func TestListenerReportsInnerFailure(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(tcp)
	defer l.Close()
	_ = tcp.Close()                                           // not through l: the inner listener fails under it
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) { // the inner listener's own error
		t.Fatalf("Accept over a closed inner listener: %v", err)
	}
}
