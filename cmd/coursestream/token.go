package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"coursestream/internal/auth"
	"coursestream/observer"
)

// tokenConfig is the configuration of the token subcommand.
type tokenConfig struct {
	Course     string
	Publish    bool
	TTL        time.Duration
	JWTKey     string
	JWTKeyFile string
	Issuer     string
	Audience   string
}

func (c *tokenConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Course, "course", "", "course id the token allows, comma-separated for several, * for all (required)")
	fs.BoolVar(&c.Publish, "publish", false, "also allow publishing to those courses")
	fs.DurationVar(&c.TTL, "ttl", time.Hour, "lifetime of the token")
	fs.StringVar(&c.JWTKey, "jwt-key", "", "HS256 secret, the server's --jwt-key")
	fs.StringVar(&c.JWTKeyFile, "jwt-key-file", "", "file holding the HS256 secret")
	fs.StringVar(&c.Issuer, "jwt-issuer", "", "iss of the token, the server's --jwt-issuer")
	fs.StringVar(&c.Audience, "jwt-audience", "", "aud of the token, the server's --jwt-audience")
}

// token mints a JWT with the configured key and prints it.
func token(args []string, stdout, _ io.Writer, getenv func(string) string) error {
	var cfg tokenConfig
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	cfg.register(fs)
	if err := parseFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, "usage: coursestream token --course ID|* [--publish] [--ttl 1h]", fs)
			return err
		}
		return usageError{err}
	}
	key := cfg.JWTKey
	switch {
	case key != "" && cfg.JWTKeyFile != "":
		return usagef("--jwt-key and --jwt-key-file are exclusive: give one")
	case cfg.JWTKeyFile != "":
		b, err := os.ReadFile(cfg.JWTKeyFile)
		if err != nil {
			return usagef("--jwt-key-file: %v", err)
		}
		key = strings.TrimRight(string(b), "\r\n")
	}
	if key == "" {
		return usagef("a --jwt-key (or --jwt-key-file) is required")
	}
	courses := splitList(cfg.Course)
	if len(courses) == 0 {
		return usagef("--course is required (an id, several comma-separated, or *)")
	}
	for _, c := range courses {
		if c != "*" && !observer.ValidCourseID(c) {
			return usagef("--course %q: not a valid course id", c)
		}
	}
	if cfg.TTL <= 0 {
		return usagef("--ttl must be positive, got %s", cfg.TTL)
	}
	a, err := auth.NewAuthorizer(auth.Options{Key: []byte(key), Issuer: cfg.Issuer, Audience: cfg.Audience})
	if err != nil {
		return err
	}
	tok, err := a.Mint(courses, cfg.Publish, cfg.TTL)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
