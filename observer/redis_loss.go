package observer

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// lossMargin is how far above the highest id an instance delivered a
// course's sequence continues after Redis lost its data: events published
// but not yet delivered when the data was lost stay below it.
const lossMargin = 1000

// raiseScript sets a course's sequence to ARGV[2] when it is below ARGV[1]
// (missing counts as 0): the data behind the ids this instance delivered
// is gone. It is a plain script, not part of the library: it runs when the
// library itself is missing.
var raiseScript = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if v < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0`)

// raiseSequence makes the course's sequence continue above high after a
// data loss, and returns the new floor.
func (r *Redis) raiseSequence(ctx context.Context, courseID string, high uint64) (uint64, error) {
	floor := high + lossMargin
	raised, err := raiseScript.Run(ctx, r.rdb, []string{SeqKey(courseID)}, high, floor).Int()
	if err != nil {
		return 0, mapError(err)
	}
	if raised == 1 {
		r.log.Warn("redis: the course's sequence was behind the ids delivered (Redis lost its data); it continues above them",
			slog.String("course", courseID), slog.Uint64("delivered", high), slog.Uint64("from", floor))
	}
	return floor, nil
}

// raiseSequences raises the sequence of every course with local listeners
// that Redis lost (see raiseSequence). It runs before the library is loaded
// again, so that no publish can reuse an id a client already has.
func (r *Redis) raiseSequences(ctx context.Context) {
	for _, c := range r.courseList() {
		if high := c.highest(); high > 0 {
			_, _ = r.raiseSequence(ctx, c.id, high)
		}
	}
}
