package stream

import "coursestream/internal/workq"

// runq hands direct streams with work (events, heartbeats, a closed
// coalesce window, an end) to the hub's workers (Hub.Run), each of which
// runs one stream's turn at a time (direct.runTurn). A stream is on it at
// most once (turnQueued), so one worker at a time writes it and its
// frames stay in order. Push never blocks: the broker's listeners call it.
type runq = workq.Queue[*direct]

// workerFunc is the function a hub worker blocks in: the goroutine leak
// checks of the tests ignore it (Run's workers are checked by TestMain).
const workerFunc = "coursestream/internal/workq.(*Queue[...]).Work"
