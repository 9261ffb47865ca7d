// Command workload watches the Workload API and reports what it pushes, as
// JSON lines on stdout:
//
//	{"event":"x509_update","n":1,"spiffe_id":...,"serial":...,"serial_hex":...,"not_after":...,"hint":...,"svid_count":2,"svids":[...]}
//	{"event":"x509_bundle","trust_domain":"example.org","authorities":[fingerprints...]}   (when it changes)
//	{"event":"jwt_bundle","trust_domain":"example.org","key_ids":[...]}                    (when it changes)
//	{"event":"jwt_svid",...,"token":...}                                                  (with -fetch-jwt)
//	{"event":"watch_error","stream":"x509"|"jwt_bundles","error":...}                      (agent gone, no identity, ...)
//	{"event":"done","x509_updates":N}
//
// With -updates N it exits 0 once it has seen N X.509 updates, the first
// JWT bundle update (unless -no-jwt-bundles) and the answers to -fetch-jwt;
// with -updates 0 it runs until -timeout. It exits 1 with {"event":"error"}
// when -timeout comes first while -updates were asked for.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"zt-interop/internal/peer"
)

type watcher struct {
	mu          sync.Mutex
	updates     int
	want        int
	x509Done    chan struct{}
	x509Once    sync.Once
	x509Bundles map[string][]string
	jwtBundles  map[string][]string
	jwtSeen     chan struct{}
	jwtOnce     sync.Once
	firstX509   chan struct{}
	firstOnce   sync.Once
	closing     atomic.Bool
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.updates++
	svids := make([]peer.Fields, 0, len(c.SVIDs))
	for _, s := range c.SVIDs {
		svids = append(svids, peer.SVIDFields(s))
	}
	fields := peer.Fields{"n": w.updates, "svid_count": len(c.SVIDs), "svids": svids}
	if len(c.SVIDs) > 0 {
		for k, v := range peer.SVIDFields(c.DefaultSVID()) {
			fields[k] = v
		}
	}
	peer.Emit("x509_update", fields)

	seen := map[string]bool{}
	for _, b := range c.Bundles.Bundles() {
		td := b.TrustDomain().String()
		seen[td] = true
		fps := fingerprints(b.X509Authorities())
		if old, ok := w.x509Bundles[td]; !ok || !slices.Equal(old, fps) {
			w.x509Bundles[td] = fps
			peer.Emit("x509_bundle", peer.Fields{"trust_domain": td, "authorities": fps})
		}
	}
	for td := range w.x509Bundles {
		if !seen[td] {
			delete(w.x509Bundles, td)
			peer.Emit("x509_bundle_removed", peer.Fields{"trust_domain": td})
		}
	}
	w.firstOnce.Do(func() { close(w.firstX509) })
	if w.want > 0 && w.updates >= w.want {
		w.x509Once.Do(func() { close(w.x509Done) })
	}
}

func (w *watcher) OnX509ContextWatchError(err error) {
	if w.closing.Load() {
		return
	}
	peer.Emit("watch_error", peer.Fields{"stream": "x509", "error": err.Error()})
}

func (w *watcher) OnJWTBundlesUpdate(set *jwtbundle.Set) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, b := range set.Bundles() {
		td := b.TrustDomain().String()
		seen[td] = true
		ids := make([]string, 0)
		for kid := range b.JWTAuthorities() {
			ids = append(ids, kid)
		}
		sort.Strings(ids)
		if old, ok := w.jwtBundles[td]; !ok || !slices.Equal(old, ids) {
			w.jwtBundles[td] = ids
			peer.Emit("jwt_bundle", peer.Fields{"trust_domain": td, "key_ids": ids})
		}
	}
	for td := range w.jwtBundles {
		if !seen[td] {
			delete(w.jwtBundles, td)
			peer.Emit("jwt_bundle_removed", peer.Fields{"trust_domain": td})
		}
	}
	w.jwtOnce.Do(func() { close(w.jwtSeen) })
}

func (w *watcher) OnJWTBundlesWatchError(err error) {
	if w.closing.Load() {
		return
	}
	peer.Emit("watch_error", peer.Fields{"stream": "jwt_bundles", "error": err.Error()})
}

func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, peer.Fingerprint(c))
	}
	sort.Strings(out)
	return out
}

func main() {
	var common peer.Common
	common.Register()
	updates := flag.Int("updates", 1, "exit after this many X.509 updates (0: run until -timeout)")
	timeout := flag.Duration("timeout", 60*time.Second, "overall time limit")
	var audiences peer.Strings
	flag.Var(&audiences, "fetch-jwt", "after the first X.509 update, fetch a JWT-SVID for this audience and print it (repeatable)")
	jwtAll := flag.Bool("jwt-all", false, "with -fetch-jwt: print every JWT-SVID, not just the first")
	noJWTBundles := flag.Bool("no-jwt-bundles", false, "do not watch JWT bundles")
	flag.Parse()

	opts, err := common.ClientOptions()
	if err != nil {
		peer.Fail("workload api", err)
	}
	ctx, cancel := peer.SignalContext()
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, *timeout)
	defer cancel()

	client, err := workloadapi.New(ctx, opts...)
	if err != nil {
		peer.Fail("workload api client", err)
	}
	defer client.Close()

	w := &watcher{
		want: *updates, x509Done: make(chan struct{}), firstX509: make(chan struct{}), jwtSeen: make(chan struct{}),
		x509Bundles: map[string][]string{}, jwtBundles: map[string][]string{},
	}
	if *noJWTBundles {
		close(w.jwtSeen)
	}
	fetched := make(chan struct{})
	if len(audiences) == 0 {
		close(fetched)
	}
	go func() { _ = client.WatchX509Context(ctx, w) }()
	if !*noJWTBundles {
		go func() { _ = client.WatchJWTBundles(ctx, w) }()
	}
	if len(audiences) > 0 {
		go func() {
			defer close(fetched)
			select {
			case <-ctx.Done():
				return
			case <-w.firstX509:
			}
			for _, aud := range audiences {
				svids, err := peer.FetchJWT(ctx, client, jwtsvid.Params{Audience: aud}, *jwtAll, 200*time.Millisecond)
				if err != nil {
					peer.Emit("jwt_error", peer.Fields{"audience": aud, "error": err.Error()})
					continue
				}
				for _, s := range svids {
					peer.Emit("jwt_svid", peer.JWTFields(s))
				}
			}
		}()
	}

	allDone := make(chan struct{})
	go func() {
		<-w.x509Done
		<-w.jwtSeen
		<-fetched
		close(allDone)
	}()
	select {
	case <-allDone:
	case <-ctx.Done():
		w.mu.Lock()
		got := w.updates
		w.mu.Unlock()
		if *updates > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			w.closing.Store(true)
			peer.Fail("workload", fmt.Errorf("saw %d of %d X.509 updates (and JWT bundles: %v, JWT fetches: %v) before the %v timeout",
				got, *updates, closed(w.jwtSeen), closed(fetched), *timeout))
		}
	}
	w.closing.Store(true)
	w.mu.Lock()
	got := w.updates
	w.mu.Unlock()
	peer.Emit("done", peer.Fields{"x509_updates": got})
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
