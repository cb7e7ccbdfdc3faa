package main

import (
	"strings"
	"testing"
)

// TestRedisSentinelFlagErrors: a half-given or conflicting Sentinel
// configuration exits 2 with one line naming the flag, for serve and
// publish, from flags or the environment.
func TestRedisSentinelFlagErrors(t *testing.T) {
	t.Parallel()
	pub := []string{"publish", "--course", "c", "--type", "t"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--redis-sentinel", "127.0.0.1:26379"}, nil, "--redis-master"},
		{[]string{"--redis-master", "mymaster"}, nil, "--redis-sentinel"},
		{nil, map[string]string{"COURSESTREAM_REDIS_MASTER": "mymaster"}, "--redis-sentinel"},
		{[]string{"--redis-sentinel", "nonsense", "--redis-master", "m"}, nil, "--redis-sentinel"},
		{[]string{"--redis-sentinel", "127.0.0.1:1", "--redis-master", "m", "--redis-url", "redis://127.0.0.1:2/0"}, nil, "exclusive"},
		{[]string{"--redis-sentinel", "127.0.0.1:1", "--redis-master", "m", "--redis-cluster", "127.0.0.1:2"}, nil, "exclusive"},
		{nil, map[string]string{"COURSESTREAM_REDIS_SENTINEL": "127.0.0.1:1", "COURSESTREAM_REDIS_MASTER": "m", "COURSESTREAM_REDIS_URL": "redis://127.0.0.1:2/0"}, "exclusive"},
		{[]string{"--redis-password", "x"}, nil, "--redis-password"},
		{[]string{"--redis-wait-replicas", "-1", "--redis-url", "redis://127.0.0.1:2/0"}, nil, "--redis-wait-replicas"},
		{[]string{"--redis-wait-replicas", "1"}, nil, "--redis-wait-replicas"},
		{append(pub, "--redis-master", "m"), nil, "--redis-sentinel"},
		{append(pub, "--redis-sentinel", "127.0.0.1:1"), nil, "--redis-master"},
		{append(pub, "--redis-sentinel", "127.0.0.1:1", "--redis-master", "m", "--redis-url", "redis://127.0.0.1:2/0"), nil, "exclusive"},
	} {
		code, _, stderr := runCLI(tc.args, tc.env)
		lines := strings.Count(strings.TrimRight(stderr, "\n"), "\n") + 1
		if code != exitUsage || !strings.Contains(stderr, tc.want) || lines != 1 {
			t.Errorf("%v %v: exit %d, stderr %q; want 2 and one line with %q", tc.args, tc.env, code, stderr, tc.want)
		}
	}
}
