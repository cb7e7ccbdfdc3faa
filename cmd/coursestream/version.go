package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// releaseVersion is set by a release build:
//
//	go build -ldflags "-X main.releaseVersion=v0.2.0" ./cmd/coursestream
//
// make build sets it from git describe. Empty, the version comes from the
// module's build information.
var releaseVersion string

// releaseRevision and releaseModified ("true") are set by make build too:
// they stand in for the toolchain's VCS stamping where it finds no
// repository (a git worktree, -buildvcs=false), and give way to it.
var releaseRevision, releaseModified string

// buildInfo is what a binary knows of its own making.
type buildInfo struct {
	Version   string // release version, module version, or "devel"
	Revision  string // VCS revision, "unknown" outside a VCS checkout
	Modified  bool   // the tree had changes not committed
	GoVersion string // toolchain that built the binary
}

// readBuildInfo reads the version given to the linker, then the VCS
// stamping of the Go toolchain (runtime/debug.ReadBuildInfo).
func readBuildInfo() buildInfo {
	b := buildInfo{Version: releaseVersion, Revision: releaseRevision, Modified: releaseModified == "true", GoVersion: runtime.Version()}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version // go install module@version, or a VCS tag
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// version is the version alone, as the startup log line shows it.
func version() string { return readBuildInfo().Version }

// String is the version command's answer: the version on the first line,
// then one line for each other fact.
func (b buildInfo) String() string {
	return fmt.Sprintf("coursestream %s\nrevision %s\nmodified %t\ngo %s\n", b.Version, b.Revision, b.Modified, b.GoVersion)
}

// versionCommand prints the build information; it takes no arguments.
func versionCommand(args []string, stdout io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout, "usage: coursestream version (also: coursestream --version)\n\nPrints the version, the VCS revision, whether the tree was modified and the Go version.", fs)
			return err
		}
		return usageError{err}
	}
	fmt.Fprint(stdout, readBuildInfo())
	return nil
}
