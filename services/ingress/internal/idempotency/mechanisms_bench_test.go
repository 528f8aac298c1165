package idempotency

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
)

// BenchmarkMechanisms measures the throughput of the ways to remember a
// delivery id for 72 h that were considered
// (docs/decisions/0015-idempotency-kv-bucket-with-ttl.md has the figures
// and the choice). Each op is one first delivery: whatever check the mechanism
// needs, the event publish, and the record write, with 64 deliveries in
// flight. BenchmarkRememberCost measures what remembering costs.
//
//   - none: the event publish alone, 2 min duplicate window (the baseline).
//   - stream-window: EVENTS' duplicate window stretched to 72 h; no record.
//   - kv-bucket-ttl: a KV bucket whose MaxAge is the horizon; Get, publish,
//     Put.
//   - kv-key-ttl: a KV bucket with per-key TTLs (LimitMarkerTTL); Get,
//     publish, Put with Nats-TTL.
//   - subject-per-id: a plain stream, one subject per id, MaxMsgsPerSubject
//     1; direct get, publish, publish.
func BenchmarkMechanisms(b *testing.B) {
	for _, m := range []mechanism{none{}, streamWindow{}, kvBucketTTL{}, kvKeyTTL{}, subjectPerID{}} {
		b.Run(m.name(), func(b *testing.B) { benchMechanism(b, m) })
	}
}

const horizon = 72 * time.Hour

type mechanism interface {
	name() string
	topology() topology.Topology
	setup(ctx context.Context, js jetstream.JetStream) (deliver func(ctx context.Context, id string, event *nats.Msg) error, err error)
}

func benchMechanism(b *testing.B, m mechanism) {
	_, js := startServer(b, b.TempDir(), m.topology())
	ctx := context.Background()
	deliver, err := m.setup(ctx, js)
	if err != nil {
		b.Fatal(err)
	}
	body := make([]byte, 256)
	const workers = 64
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				id := "shop:msg_" + strconv.FormatInt(i, 10)
				msg := nats.NewMsg("webhooks.shop.order_created")
				msg.Header.Set(nats.MsgIdHdr, id)
				msg.Data = body
				if err := deliver(ctx, id, msg); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d deliveries failed", n)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkRememberCost stores rememberIDs ids (whatever b.N is: the
// figures are per id, and one run takes ~15 s) in each mechanism's
// remembering structure alone and reports the disk and the steady-state
// heap one id costs while it is remembered, and the server's restart time
// with them all:
//
//   - stream-window: N 1 KiB events with Nats-Msg-Id, to compare with N
//     without (events-without-id): the difference is the duplicate-window
//     entries, kept for the whole horizon and rebuilt at restart by reading
//     every event of the window;
//   - kv-bucket-ttl, kv-key-ttl, subject-per-id: N records.
func BenchmarkRememberCost(b *testing.B) {
	const rememberIDs = 300_000
	ctx := context.Background()
	type fill func(js jetstream.JetStream, i int) error
	payload := make([]byte, 1024)
	events := func(withID bool) fill {
		return func(js jetstream.JetStream, i int) error {
			m := nats.NewMsg("webhooks.shop.order_created")
			m.Data = payload
			if withID {
				m.Header.Set(nats.MsgIdHdr, "shop:msg_"+strconv.Itoa(i))
			}
			_, err := js.PublishMsgAsync(m)
			return err
		}
	}
	records := func(prefix string, opts ...jetstream.PublishOpt) fill {
		return func(js jetstream.JetStream, i int) error {
			_, err := js.PublishAsync(prefix+Key("shop:msg_"+strconv.Itoa(i)), []byte("webhooks.shop.order_created"), opts...)
			return err
		}
	}
	cases := []struct {
		name  string
		topo  topology.Topology
		setup func(js jetstream.JetStream) error
		fill  fill
	}{
		{name: "events-without-id", topo: topology.Topology{DuplicateWindow: horizon}, fill: events(false)},
		{name: "stream-window", topo: topology.Topology{DuplicateWindow: horizon}, fill: events(true)},
		{name: "kv-bucket-ttl", setup: func(js jetstream.JetStream) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", TTL: horizon, History: 1})
			return err
		}, fill: records("$KV.b.")},
		{name: "kv-key-ttl", setup: func(js jetstream.JetStream) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b", History: 1, LimitMarkerTTL: time.Minute})
			return err
		}, fill: records("$KV.b.", jetstream.WithMsgTTL(horizon))},
		{name: "subject-per-id", setup: func(js jetstream.JetStream) error {
			_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "IDS", Subjects: []string{"ids.>"},
				MaxMsgsPerSubject: 1, MaxAge: horizon, AllowDirect: true})
			return err
		}, fill: records("ids.")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			ns, js := startServer(b, dir, c.topo)
			if c.setup != nil {
				if err := c.setup(js); err != nil {
					b.Fatal(err)
				}
			}
			// The timer runs through the whole case (the 11 s wait
			// included) so that the framework runs it once: the figures
			// are per id, not per b.N.
			heapBefore, diskBefore := settledHeap(b), dirSize(b, dir)
			for i := range rememberIDs {
				if err := c.fill(js, i); err != nil {
					b.Fatal(err)
				}
				if i%1000 == 999 {
					// Keep the async publishes in flight under the
					// client's limit.
					<-js.PublishAsyncComplete()
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("async publishes not acknowledged within a minute")
			}
			b.ReportMetric(float64(dirSize(b, dir)-diskBefore)/rememberIDs, "disk-B/id")
			js.Conn().Close()
			ns.Shutdown()
			ns.WaitForShutdown()
			t0 := time.Now()
			_, js2 := startServer(b, dir, c.topo)
			if _, err := js2.Stream(ctx, natsx.StreamEvents); err != nil {
				b.Fatal(err)
			}
			restart := time.Since(t0)
			// What a server holds for the ids in steady state: after a
			// restart, once the block caches the restart loaded have
			// expired (the file store drops them after 10 s; there is no
			// event to wait for).
			time.Sleep(11 * time.Second)
			b.ReportMetric(float64(settledHeap(b)-heapBefore)/rememberIDs, "heap-B/id")
			b.ReportMetric(float64(restart.Milliseconds()), "restart-ms")
			b.ReportMetric(rememberIDs, "ids")
		})
	}
}

func startServer(b *testing.B, dir string, topo topology.Topology) (*server.Server, jetstream.JetStream) {
	b.Helper()
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := topology.Ensure(ctx, js, topo); err != nil {
		b.Fatal(err)
	}
	return ns, js
}

// settledHeap is the live heap once the file store's block caches (which
// expire after a few seconds) have been dropped: it reads the heap every
// quarter second until two readings agree within 1%.
func settledHeap(b *testing.B) int64 {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	var last int64 = -1
	for {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		got := int64(ms.HeapAlloc)
		if last > 0 && abs(got-last) < last/100 {
			return got
		}
		if time.Now().After(deadline) {
			b.Fatalf("the heap did not settle within 30s (last %d, now %d bytes)", last, got)
		}
		last = got
		<-tick.C
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

func dirSize(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

type none struct{}

func (none) name() string                { return "none" }
func (none) topology() topology.Topology { return topology.Topology{} }
func (none) setup(_ context.Context, js jetstream.JetStream) (func(context.Context, string, *nats.Msg) error, error) {
	return func(ctx context.Context, _ string, m *nats.Msg) error {
		_, err := js.PublishMsg(ctx, m)
		return err
	}, nil
}

type streamWindow struct{ none }

func (streamWindow) name() string                { return "stream-window" }
func (streamWindow) topology() topology.Topology { return topology.Topology{DuplicateWindow: horizon} }

type kvBucketTTL struct{}

func (kvBucketTTL) name() string                { return "kv-bucket-ttl" }
func (kvBucketTTL) topology() topology.Topology { return topology.Topology{} }
func (kvBucketTTL) setup(ctx context.Context, js jetstream.JetStream) (func(context.Context, string, *nats.Msg) error, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_bucket_ttl", TTL: horizon, History: 1})
	if err != nil {
		return nil, err
	}
	return kvDeliver(js, kv, nil), nil
}

type kvKeyTTL struct{}

func (kvKeyTTL) name() string                { return "kv-key-ttl" }
func (kvKeyTTL) topology() topology.Topology { return topology.Topology{} }
func (kvKeyTTL) setup(ctx context.Context, js jetstream.JetStream) (func(context.Context, string, *nats.Msg) error, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_key_ttl", History: 1, LimitMarkerTTL: time.Minute})
	if err != nil {
		return nil, err
	}
	return kvDeliver(js, kv, []jetstream.PublishOpt{jetstream.WithMsgTTL(horizon)}), nil
}

// kvDeliver checks the bucket, publishes, then writes the record.
func kvDeliver(js jetstream.JetStream, kv jetstream.KeyValue, putOpts []jetstream.PublishOpt) func(context.Context, string, *nats.Msg) error {
	prefix := "$KV." + kv.Bucket() + "."
	return func(ctx context.Context, id string, m *nats.Msg) error {
		key := Key(id)
		if _, err := kv.Get(ctx, key); err == nil {
			return fmt.Errorf("%s already recorded", id)
		} else if err != jetstream.ErrKeyNotFound {
			return err
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return err
		}
		_, err := js.Publish(ctx, prefix+key, []byte(m.Subject), putOpts...)
		return err
	}
}

type subjectPerID struct{}

func (subjectPerID) name() string                { return "subject-per-id" }
func (subjectPerID) topology() topology.Topology { return topology.Topology{} }
func (subjectPerID) setup(ctx context.Context, js jetstream.JetStream) (func(context.Context, string, *nats.Msg) error, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "BENCH_IDS", Subjects: []string{"ids.>"}, MaxMsgsPerSubject: 1, MaxAge: horizon,
		AllowDirect: true, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, id string, m *nats.Msg) error {
		subj := "ids." + Key(id)
		if _, err := s.GetLastMsgForSubject(ctx, subj); err == nil {
			return fmt.Errorf("%s already recorded", id)
		} else if err != jetstream.ErrMsgNotFound {
			return err
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return err
		}
		_, err := js.Publish(ctx, subj, []byte(m.Subject))
		return err
	}, nil
}
