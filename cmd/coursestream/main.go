// Command coursestream delivers course events to browsers and programs in
// real time: Server-Sent Events with resume, ETag polling, and publishing
// over HTTP or straight into Redis.
//
// Usage:
//
//	coursestream [serve] [flags]     run the service (the default)
//	coursestream publish [flags]     publish one event, print its id
//	coursestream token [flags]       mint a JWT with the configured key
//	coursestream version             print the version (also --version)
//	coursestream help [COMMAND]      list the commands, or COMMAND's flags
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
	"strings"
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

// command is one subcommand: its name, the one line --help shows for it,
// and what runs it.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error
}

// commands are the subcommands, in the order --help lists them.
var commands = []command{
	{"serve", "run the service (the default command)", serve},
	{"publish", "publish one event over HTTP or straight into Redis, print its id", publish},
	{"token", "mint a JWT with the configured key", func(_ context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
		return token(args, stdout, stderr, getenv)
	}},
	{"version", "print the version, the VCS revision and the Go version", func(_ context.Context, args []string, stdout, _ io.Writer, getenv func(string) string) error {
		return versionCommand(args, stdout, getenv)
	}},
	{"help", "print this help; help COMMAND prints the flags of COMMAND", nil}, // run answers it
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	name := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case isHelpFlag(a):
			name, args = "help", args[1:]
		case a == "-version" || a == "--version":
			name, args = "version", args[1:]
		case a != "" && a[0] != '-':
			name, args = a, args[1:]
		}
	}
	err := dispatch(ctx, name, args, stdout, stderr, getenv)
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

// dispatch runs the named command.
func dispatch(ctx context.Context, name string, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if name == "help" {
		switch {
		case len(args) == 0:
			help(stdout)
			return nil
		case len(args) == 1 && args[0] != "help":
			return dispatch(ctx, args[0], []string{"--help"}, stdout, stderr, getenv)
		default:
			return usagef("help takes at most one command name, got %q", strings.Join(args, " "))
		}
	}
	for _, c := range commands {
		if c.name == name && c.run != nil {
			return c.run(ctx, args, stdout, stderr, getenv)
		}
	}
	return usagef("unknown command %q: the commands are %s (coursestream --help describes them)", name, commandNames())
}

func isHelpFlag(a string) bool { return a == "-h" || a == "-help" || a == "--help" }

func commandNames() string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// help is the top-level help: what the binary is, its commands, then the
// flags of serve, the default command, with their environment variables.
func help(w io.Writer) {
	fmt.Fprintln(w, "coursestream delivers course events in real time: Server-Sent Events with resume,")
	fmt.Fprintln(w, "ETag polling and long-polling, publishing over HTTP or straight into Redis.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: coursestream [COMMAND] [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "coursestream COMMAND --help lists the flags of COMMAND; --version is the version command.")
	fmt.Fprintln(w, "Every flag has an environment fallback COURSESTREAM_<FLAG>; a flag given wins.")
	fmt.Fprintln(w, "The HTTP API is described by the OpenAPI document served at /openapi.json.")
	fmt.Fprintln(w)
	usage(w, "flags of serve:", newServeFlags(new(Config)))
}
