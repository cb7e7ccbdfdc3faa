package observer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultWaitTimeout bounds how long a publish waits for its replicas.
const DefaultWaitTimeout = time.Second

// ErrNotReplicated is wrapped (with ErrUnavailable) by a Publish whose
// event did not reach RedisConfig.WaitReplicas replicas within
// WaitTimeout: the event may or may not have been kept.
var ErrNotReplicated = errors.New("the event did not reach enough replicas in time")

// publishCall calls the library's publish function and, with
// WaitReplicas set, WAIT on the same connection (one pipeline to the
// course's master): the call answers only once that many replicas have
// everything the connection wrote, the event included.
func (r *Redis) publishCall(ctx context.Context, courseID string, args []any) (any, error) {
	if r.cfg.WaitReplicas <= 0 {
		return r.fcall(ctx, false, fnPublishEvent, []string{courseID}, args...)
	}
	v, err := r.publishWait(ctx, courseID, args)
	if isFunctionMissing(err) {
		if err := r.repairLibrary(ctx, nil); err != nil {
			return nil, err
		}
		v, err = r.publishWait(ctx, courseID, args)
	}
	return v, err
}

// publishWait is FCALL then WAIT, pipelined on one connection of the
// course's master.
func (r *Redis) publishWait(ctx context.Context, courseID string, args []any) (any, error) {
	node := r.single
	if r.cluster != nil {
		var err error
		if node, err = r.cluster.MasterForKey(ctx, SeqKey(courseID)); err != nil {
			return nil, err
		}
	}
	pipe := node.Pipeline()
	call := pipe.FCall(ctx, fnPublishEvent, []string{courseID}, args...)
	wait := pipe.Do(ctx, "WAIT", r.cfg.WaitReplicas, r.cfg.WaitTimeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	v, err := call.Result()
	if err != nil {
		return nil, err
	}
	n, err := wait.Int64()
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w: WAIT: %w", ErrUnavailable, ErrNotReplicated, err)
	case n < int64(r.cfg.WaitReplicas):
		return nil, fmt.Errorf("%w: %w: %d of %d replicas acknowledged within %s", ErrUnavailable, ErrNotReplicated, n, r.cfg.WaitReplicas, r.cfg.WaitTimeout)
	}
	return v, nil
}
