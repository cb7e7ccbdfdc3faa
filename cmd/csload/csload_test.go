package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// startServer builds and runs coursestream on a free loopback port.
func startServer(t *testing.T) (url string, pid int) {
	t.Helper()
	return startCoursestream(t, "http://")
}

// startCoursestream runs the package's coursestream binary with args on a
// free loopback port and returns scheme plus the address it listens on.
func startCoursestream(t *testing.T, scheme string, args ...string) (url string, pid int) {
	t.Helper()
	cmd := exec.Command(coursestreamBinary(t), append([]string{"--addr", "127.0.0.1:0"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	re := regexp.MustCompile(`msg="coursestream listening" addr=(\S+)`)
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return scheme + m[1], cmd.Process.Pid
		}
	}
	t.Fatal("server exited before listening")
	return "", 0
}

// TestSmallLoadRun is the suite's load run: 500 clients on 5 courses, 100
// events, every client must get its course's events exactly once and in
// order. It asserts correctness, not speed.
func TestSmallLoadRun(t *testing.T) {
	url, pid := startServer(t)
	c := config{
		Server: url, Clients: 500, Courses: 5, Ramp: 2000, Events: 100, Rate: 200, Payload: 64,
		Publish: "http", PID: pid, Timeout: time.Minute, Settle: 200 * time.Millisecond, Drain: 20 * time.Second,
		Concurrency: 4, CoursePfx: "small-",
	}
	rep := sseRun(t, c)
	if rep.Connected != 500 || rep.Published != 100 || rep.Expected != 500*100/5 ||
		rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.Received != rep.Expected {
		t.Fatalf("report %+v", rep)
	}
}

// TestSmallMultiCourseLoadRun: 200 clients, each on one stream of 4 of
// 10 courses: every client gets each of its courses' events exactly once
// and in order.
func TestSmallMultiCourseLoadRun(t *testing.T) {
	url, pid := startServer(t)
	c := config{
		Server: url, Clients: 200, Courses: 10, PerStream: 4, Ramp: 2000, Events: 100, Rate: 200, Payload: 64,
		Publish: "http", PID: pid, Timeout: time.Minute, Settle: 200 * time.Millisecond, Drain: 20 * time.Second,
		Concurrency: 4, CoursePfx: "multi-",
	}
	if err := c.check(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	rep, err := runSSE(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	rep.print(os.Stdout, false)
	if rep.Connected != 200 || rep.Published != 100 || rep.Expected != 200*4*100/10 ||
		rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.Received != rep.Expected {
		t.Fatalf("report %+v", rep)
	}
}

func TestSmallPollRun(t *testing.T) {
	url, _ := startServer(t)
	c := config{
		Server: url, Clients: 20, Courses: 2, Ramp: 1000, Events: 40, Rate: 100, Payload: 16,
		Publish: "http", Timeout: time.Minute, Drain: 1500 * time.Millisecond, PollEvery: 200 * time.Millisecond,
		Concurrency: 2, CoursePfx: "poll-",
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	rep, err := runPoll(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 || rep.NotModOK == 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRefusesRemoteServer(t *testing.T) {
	c := config{Server: "http://10.1.2.3:8080", Clients: 1, Courses: 1, Ramp: 1, Rate: 1, Concurrency: 1, Publish: "http"}
	if err := c.check(); err == nil {
		t.Fatal("a non-loopback server was accepted without --allow-remote")
	}
}
