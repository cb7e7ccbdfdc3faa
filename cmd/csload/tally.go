package main

import (
	"fmt"
	"io"
)

// tally is what a run counts of its deliveries, the figures its invariant
// rests on (0 lost, 0 duplicated, none out of order), in every report.
type tally struct {
	Expected   int `json:"expected"`
	Received   int `json:"received"`
	Lost       int `json:"lost"`
	Duplicates int `json:"duplicates"`
	OutOfOrder int `json:"outOfOrder"`
	Resets     int `json:"resets"`
}

// settle works out Lost from what was expected and received (a duplicate
// is received but delivers nothing new).
func (t *tally) settle() { t.Lost = t.Expected - (t.Received - t.Duplicates) }

// add counts o's figures in t.
func (t *tally) add(o tally) {
	t.Expected += o.Expected
	t.Received += o.Received
	t.Lost += o.Lost
	t.Duplicates += o.Duplicates
	t.OutOfOrder += o.OutOfOrder
	t.Resets += o.Resets
}

// broken returns the error csload exits with when the invariant does not
// hold, nil when it does.
func (t tally) broken() error {
	if t.Lost > 0 || t.Duplicates > 0 || t.OutOfOrder > 0 {
		return fmt.Errorf("invariant broken: %d lost, %d duplicates, %d out of order", t.Lost, t.Duplicates, t.OutOfOrder)
	}
	return nil
}

// printLoss writes the tally's loss line, with extra appended (", reconnections 3").
func (t tally) printLoss(w io.Writer, extra string) {
	fmt.Fprintf(w, "lost %d, duplicates %d, out of order %d, resets %d%s\n", t.Lost, t.Duplicates, t.OutOfOrder, t.Resets, extra)
}
