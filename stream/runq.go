package stream

import "coursestream/internal/workq"

// runq hands direct connections with work (events, heartbeats, a closed
// coalesce window, an end) to the hub's workers (Hub.Run). A connection is
// on it at most once (its socket's scheduled mark), and one worker at a
// time runs it, so its frames stay in order. Push never blocks: the
// broker's listeners call it.
type runq = workq.Queue[*conn]

// workerFunc is the function a hub worker blocks in: the goroutine leak
// checks of the tests ignore it (Run's workers are checked by TestMain).
const workerFunc = "coursestream/internal/workq.(*Queue[...]).Work"

// runDirect is one worker's turn on a direct connection: the coalesce
// window if it closed, then what was queued. New work arriving meanwhile
// puts the connection back on the queue when the turn ends.
func (c *conn) runDirect() {
	c.mu.Lock()
	due, stopped := c.windowDue, c.stopped
	c.windowDue = false
	c.mu.Unlock()
	if !stopped {
		if !due || c.closeWindow() {
			c.deliver()
		}
	}
	c.mu.Lock()
	if !c.stopped && (len(c.queue) > 0 || c.beat || c.ending != nil || c.windowDue) {
		c.h.runq.Push(c) // still scheduled
	} else {
		c.scheduled = false
	}
	c.mu.Unlock()
}
