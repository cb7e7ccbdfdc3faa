package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// tlsFiles is the certificate and key serve reads for HTTPS (--tls-cert,
// --tls-key). Both or neither: one without the other is a configuration
// error.
type tlsFiles struct {
	cert, key string
}

// enabled reports whether HTTPS is configured.
func (f tlsFiles) enabled() bool { return f.cert != "" || f.key != "" }

// load reads the key pair into a server TLS configuration (TLS 1.2 and
// up). http.Server.ServeTLS adds the ALPN protocols, h2 first: HTTP/2 for
// every client that offers it, HTTP/1.1 for the rest. The error is one
// line that names the flags.
func (f tlsFiles) load() (*tls.Config, error) {
	switch {
	case f.cert == "":
		return nil, errors.New("--tls-key is set without --tls-cert: give both, or neither for plain HTTP")
	case f.key == "":
		return nil, errors.New("--tls-cert is set without --tls-key: give both, or neither for plain HTTP")
	}
	pair, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		msg, _, _ := strings.Cut(err.Error(), "\n") // crypto/tls may quote a PEM block on further lines
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %s", f.cert, f.key, msg)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}
