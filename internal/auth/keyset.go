package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Timings of a KeySet. RefetchEvery is the contract's bound on fetches
// caused by tokens that name an unknown kid.
const (
	RefetchEvery   = 10 * time.Second // at most one unknown-kid fetch per this
	RefreshEvery   = 10 * time.Minute // the set is fetched again this often
	fetchTimeout   = 10 * time.Second // one fetch of the set, at start or periodic
	refetchTimeout = 5 * time.Second  // an unknown-kid fetch, which a request waits for
	retryFirst     = 250 * time.Millisecond
	retryMax       = RefetchEvery // until the first fetch succeeds, retries back off to this
)

// ErrKeySetNotFetched is returned (wrapped) by Ready and by token checks
// until the key set has been fetched once.
var ErrKeySetNotFetched = errors.New("the JWT key set has not been fetched yet")

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	URL    string       // the JSON Web Key Set, http(s)
	Client *http.Client // nil: a client of its own, closed when Run returns
	Logger *slog.Logger // nil: slog.Default()
}

// KeySet is a JSON Web Key Set fetched from an identity provider, with
// the RS256, ES256 and EdDSA keys that verify its tokens, chosen by kid.
// The set is fetched when Run starts (retried with backoff until it
// succeeds), again every RefreshEvery, and again when a token names a kid
// the set lacks, at most once per RefetchEvery: a key rotated in works
// without a restart, one rotated out stops working once the set is fetched
// again. Fetching, parsing and the unknown-kid rate limit are
// github.com/MicahParks/jwkset's; Run owns its refresh goroutine.
type KeySet struct {
	url     string
	client  *http.Client
	ownsCli bool
	log     *slog.Logger
	fails   failureLog
	first   chan struct{} // closed by the first fetch that succeeds

	mu    sync.RWMutex
	state keySetState
	keys  keyfunc.Keyfunc // set with state fetched
	last  error           // the last failure while fetching
}

// keySetState is where a KeySet is in its life.
type keySetState int

const (
	idle     keySetState = iota // Run has not been called
	fetching                    // Run is fetching the set, which it has not had yet
	fetched                     // the set is held (later fetches may fail: the last good set is kept)
	stopped                     // Run has returned
)

// NewKeySet checks cfg and returns a KeySet. It fetches nothing and starts
// no goroutine: Run does.
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	if err := CheckKeySetURL(cfg.URL); err != nil {
		return nil, err
	}
	k := &KeySet{url: cfg.URL, client: cfg.Client, log: cfg.Logger, first: make(chan struct{})}
	if k.log == nil {
		k.log = slog.Default()
	}
	if k.client == nil {
		k.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		k.ownsCli = true
	}
	k.fails = failureLog{log: k.log, url: cfg.URL}
	return k, nil
}

// CheckKeySetURL reports whether u can name a key set: an absolute http or
// https URL with a host.
func CheckKeySetURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return fmt.Errorf("the key set URL %q: want https://HOST/PATH", u)
	}
	return nil
}

// Run fetches the set, retrying until it succeeds, then keeps it fresh
// until ctx ends, and returns nil then. jwkset's refresh goroutine ends
// with ctx too (it waits only on its ticker and on ctx, and its fetches
// are bound to ctx). A KeySet runs once.
func (k *KeySet) Run(ctx context.Context) error {
	k.mu.Lock()
	again := k.state != idle
	if !again {
		k.state = fetching
	}
	k.mu.Unlock()
	if again {
		return errors.New("the JWT key set runs once")
	}
	defer k.stop()
	// jwkset's refresh goroutine runs until this context ends; it is
	// started by every attempt, so that a failed one is cancelled.
	for wait := retryFirst; ; wait = min(wait*2, retryMax) {
		attempt, cancel := context.WithCancel(ctx)
		keys, err := k.open(attempt)
		if err == nil {
			k.mu.Lock()
			k.state, k.keys, k.last = fetched, keys, nil
			k.mu.Unlock()
			close(k.first)
			<-ctx.Done()
			cancel()
			return nil
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		k.mu.Lock()
		k.last = err
		k.mu.Unlock()
		k.fails.failed(err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// open fetches the set once and returns the key function over it, which
// refreshes it until ctx ends.
func (k *KeySet) open(ctx context.Context) (keyfunc.Keyfunc, error) {
	held := fetchedStorage{Storage: jwkset.NewMemoryStorage(), fetched: k.fails.succeeded}
	store, err := jwkset.NewStorageFromHTTP(k.url, jwkset.HTTPClientStorageOptions{
		Client:              k.client,
		Ctx:                 ctx,
		HTTPTimeout:         fetchTimeout,
		RefreshErrorHandler: func(_ context.Context, err error) { k.fails.failed(err) },
		RefreshInterval:     RefreshEvery,
		Storage:             held,
	})
	if err != nil {
		return nil, fmt.Errorf("fetching the JWT key set %s: %w", k.url, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{k.url: store},
		PrioritizeHTTP:    true,
		RateLimitWaitMax:  refetchTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(RefetchEvery), 1),
	})
	if err != nil {
		return nil, fmt.Errorf("the JWT key set %s: %w", k.url, err)
	}
	// Keys marked for encryption ("use": "enc") never verify a token.
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: client, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
}

func (k *KeySet) stop() {
	k.mu.Lock()
	k.state, k.keys = stopped, nil
	k.mu.Unlock()
	if k.ownsCli {
		k.client.CloseIdleConnections() // no keep-alive goroutine outlives Run
	}
}

// Ready implements the readiness of /readyz: nil once the set has been
// fetched, an error wrapping ErrKeySetNotFetched before (with the last
// failure).
func (k *KeySet) Ready(context.Context) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	switch {
	case k.state == fetched:
		return nil
	case k.state == stopped:
		return fmt.Errorf("%w: stopped", ErrKeySetNotFetched)
	case k.last != nil:
		return fmt.Errorf("%w from %s: %w", ErrKeySetNotFetched, k.url, k.last)
	}
	return fmt.Errorf("%w from %s", ErrKeySetNotFetched, k.url)
}

// key returns the public key that verifies t: the key of t's kid, whose
// type must be the one t's algorithm takes (so that no algorithm can be
// used with a key of another kind).
func (k *KeySet) key(ctx context.Context, t *jwt.Token) (any, error) {
	if _, ok := t.Header["kid"].(string); !ok {
		return nil, errors.New("the token names no key (kid) of the key set")
	}
	k.mu.RLock()
	keys := k.keys
	k.mu.RUnlock()
	if keys == nil {
		return nil, ErrKeySetNotFetched
	}
	key, err := keys.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, fmt.Errorf("the key %v: %w", t.Header["kid"], err)
	}
	if err := checkKeyType(t.Method.Alg(), key); err != nil {
		return nil, fmt.Errorf("the key %v: %w", t.Header["kid"], err)
	}
	return key, nil
}

// fetchedStorage is the set's storage, told when a fetch has replaced its
// keys (jwkset replaces them only after a fetch that succeeded).
type fetchedStorage struct {
	jwkset.Storage
	fetched func(keys int)
}

// KeyReplaceAll implements jwkset.Storage.
func (s fetchedStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	if err := s.Storage.KeyReplaceAll(ctx, given); err != nil {
		return fmt.Errorf("holding the fetched keys: %w", err)
	}
	s.fetched(len(given))
	return nil
}
