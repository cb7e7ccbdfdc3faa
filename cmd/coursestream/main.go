// Command coursestream delivers course events to browsers and programs in
// real time: Server-Sent Events with resume, ETag polling, and publishing
// over HTTP or straight into Redis.
//
// Usage:
//
//	coursestream [serve] [flags]     run the service (the default)
//	coursestream publish [flags]     publish one event, print its id
//	coursestream token [flags]       mint a JWT with the configured key
//	coursestream version             print the version
//
// Every flag has an environment fallback COURSESTREAM_<FLAG>; --help lists
// them. Bad configuration prints one line and exits with status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // something failed at run time
	exitUsage = 2 // bad flags, configuration or input
)

// usageError marks errors that are the caller's: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, args, stdout, stderr, getenv)
	case "publish":
		err = publish(ctx, args, stdout, stderr, getenv)
	case "token":
		err = token(args, stdout, stderr, getenv)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		if err = parseFlags(fs, args, getenv); err == nil {
			fmt.Fprintln(stdout, "coursestream", version())
		} else if errors.Is(err, flag.ErrHelp) {
			usage(stdout, "usage: coursestream version", fs)
		} else {
			err = usageError{err}
		}
	case "help":
		fmt.Fprintln(stdout, "usage: coursestream [serve|publish|token|version] [flags]; coursestream COMMAND --help lists the flags")
	default:
		err = usagef("unknown command %q: want serve, publish, token or version", cmd)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, "coursestream:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "coursestream:", err)
		return exitError
	}
}

// version is the module version, or the VCS revision of a local build.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if (v == "" || v == "(devel)") && rev != "" {
		return "devel-" + rev[:min(12, len(rev))] + dirty
	}
	if v == "" {
		return "(devel)"
	}
	return v
}
