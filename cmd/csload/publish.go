package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// publisher publishes one event of a course.
type publisher interface {
	publish(ctx context.Context, course string, data []byte) error
	close()
}

func newPublisher(c config) (publisher, error) {
	if c.Target == "centrifugo" {
		return newCentrifugoPublisher(strings.TrimRight(strings.Split(c.Server, ",")[0], "/"), c.Concurrency*2), nil
	}
	if c.Publish == "fcall" {
		opt, err := redis.ParseURL(c.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("--redis-url: %w", err)
		}
		opt.PoolSize = c.Concurrency * 2
		return &fcallPublisher{rdb: redis.NewClient(opt)}, nil
	}
	return &httpPublisher{
		base:  strings.TrimRight(strings.Split(c.Server, ",")[0], "/"),
		token: c.Token,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: c.Concurrency * 2, MaxConnsPerHost: c.Concurrency * 2,
		}},
	}, nil
}

type httpPublisher struct {
	base, token string
	client      *http.Client
}

func (p *httpPublisher) publish(ctx context.Context, course string, data []byte) error {
	body := make([]byte, 0, len(data)+48)
	body = append(body, `{"type":"upload-progress","data":`...)
	body = append(body, data...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/v1/courses/"+course+"/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("publish: %d %s", resp.StatusCode, b)
	}
	return nil
}

func (p *httpPublisher) close() { p.client.CloseIdleConnections() }

type fcallPublisher struct{ rdb *redis.Client }

func (p *fcallPublisher) publish(ctx context.Context, course string, data []byte) error {
	return p.rdb.FCall(ctx, "coursestream_publish", []string{course}, "upload-progress", string(data)).Err()
}

// publishBatch sends several FCALLs in one round trip (a pipeline keeps
// their order).
func (p *fcallPublisher) publishBatch(ctx context.Context, courses []string, data [][]byte) error {
	cmds, err := p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, c := range courses {
			pipe.FCall(ctx, "coursestream_publish", []string{c}, "upload-progress", string(data[i]))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return c.Err()
		}
	}
	return nil
}

func (p *fcallPublisher) close() { _ = p.rdb.Close() }

// publishAll publishes c.Events events at c.Rate, round-robin over the
// courses, each event of one course in order (one goroutine per course
// stripe keeps a course's events sequential). The data carries the send
// time: {"t":<unix nanos>,"pad":"..."}.
func publishAll(ctx context.Context, c config, p publisher) (int, error) {
	pad := strings.Repeat("x", c.Payload)
	interval := time.Duration(float64(time.Second) / c.Rate)
	type job struct{ course string }
	jobs := make([]chan job, c.Concurrency)
	batcher, _ := p.(*fcallPublisher)
	if c.Pipeline <= 1 {
		batcher = nil
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	published := 0
	for i := range jobs {
		jobs[i] = make(chan job, 1024)
		wg.Add(1)
		go func(in chan job) {
			defer wg.Done()
			record := func(n int, err error) {
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					published += n
				}
				mu.Unlock()
			}
			mkdata := func() []byte {
				return []byte(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `,"pad":"` + pad + `"}`)
			}
			for j := range in {
				if batcher == nil {
					record(1, p.publish(ctx, j.course, mkdata()))
					continue
				}
				// Take what is waiting, up to --pipeline, into one round trip.
				courses, datas := []string{j.course}, [][]byte{mkdata()}
			more:
				for len(courses) < c.Pipeline {
					select {
					case j2, ok := <-in:
						if !ok {
							break more
						}
						courses, datas = append(courses, j2.course), append(datas, mkdata())
					default:
						break more
					}
				}
				record(len(courses), batcher.publishBatch(ctx, courses, datas))
			}
		}(jobs[i])
	}
	start := time.Now()
	for i := range c.Events {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		course := i % c.Courses
		// A course always goes to the same publisher goroutine, so its
		// events are published in order.
		jobs[course%c.Concurrency] <- job{course: c.CoursePfx + strconv.Itoa(course)}
	}
	for _, in := range jobs {
		close(in)
	}
	wg.Wait()
	if firstErr != nil {
		return published, firstErr
	}
	return published, ctx.Err()
}
