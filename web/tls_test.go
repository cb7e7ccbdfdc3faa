package web

import (
	"strings"
	"testing"

	"coursestream/internal/tlstest"
)

// startTLSServer runs the binary on HTTPS with a self-signed certificate
// for 127.0.0.1 made here, and returns its https:// base URL (the browser
// is told to accept the certificate). It is the server of
// web/test/http2.test.mjs.
func startTLSServer(t *testing.T, bin string) string {
	t.Helper()
	c := tlstest.New(t)
	certFile, keyFile := c.CertFile, c.KeyFile
	base := startServer(t, bin, "--heartbeat", "1s", "--retry", "500ms", "--tls-cert", certFile, "--tls-key", keyFile)
	return "https://" + strings.TrimPrefix(base, "http://")
}
