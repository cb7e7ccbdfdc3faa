// Package observer holds course events and hands them to whoever listens:
// the event envelope, its validation and its JSON text, the Broker
// contract, and the two brokers that implement it.
//
// An Event is the stored, immutable form of a published Message: its id
// (the course's sequence), fields, and the envelope JSON encoded once where
// it was stored (NewEvent, or ParseEnvelope for what comes from Redis).
// Redis stores that text and both SSE and polling send it as is. The
// package knows nothing of SSE or HTTP: how an event goes on a wire is the
// delivery packages' business (stream, poller).
//
// A Broker stores events (Publish), reads them back (History, LastID) and
// announces new ones to Listeners (Subscribe). Memory is the embedded
// broker of one instance; Redis shares one Redis (or Redis Cluster) among
// many instances through a function library (redis.lua) and pub/sub. Both
// fan their live events out through an Observer, which calls a course's
// listeners one after another on one goroutine, in id order; a listener
// must not block.
//
// Concurrency and lifetime: every exported type is safe for concurrent
// use. Constructors start nothing; a broker's Run starts its goroutines
// (the Redis receive loop, its fill workers) and returns once they have
// all stopped, when its context ends.
package observer
