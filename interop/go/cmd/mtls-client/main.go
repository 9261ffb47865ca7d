// Command mtls-client calls an HTTPS URL with go-spiffe mutual TLS, taking
// its X.509-SVID and bundles from the Workload API and pinning the server's
// SPIFFE ID. It reports as JSON lines on stdout.
//
// Count mode (-n N, default 1): one event per request,
//
//	{"event":"response","n":0,"status":200,"body":...,"tls_version":...,"key_exchange":...,"peer_id":...}
//	{"event":"request_error","n":0,"error":...}
//
// Duration mode (-duration D): requests back to back (or every -interval)
// for D; reports failures and each new server certificate as it sees them.
//
// Both modes end with {"event":"summary","ok":N,"failed":M,"server_serials":[...],...}
// and exit 0 when every request succeeded, 2 when some failed, 1 on a setup
// error (with an {"event":"error"} line).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"zt-interop/internal/peer"
)

type summary struct {
	ok, failed   int
	serials      []string // server leaf serials (hex), in the order first seen
	seen         map[string]bool
	errors       map[string]int
	keyExchanges map[string]int
	tlsVersions  map[string]int
	statusCounts map[int]int
	started      time.Time
	firstErrorAt string
	lastErrorAt  string
}

func main() {
	var common peer.Common
	common.Register()
	url := flag.String("url", "", "URL to GET (https://127.0.0.1:PORT/...)")
	var serverIDs peer.Strings
	flag.Var(&serverIDs, "server-id", "SPIFFE ID the server must have (repeatable)")
	serverMemberOf := flag.String("server-member-of", "", "trust domain the server must belong to")
	serverAny := flag.Bool("server-any", false, "accept any server SPIFFE ID the bundles verify")
	n := flag.Int("n", 1, "number of requests (count mode)")
	interval := flag.Duration("interval", 0, "pause between requests")
	duration := flag.Duration("duration", 0, "keep requesting for this long (duration mode; overrides -n)")
	freshConns := flag.Bool("fresh-conns", false, "a new connection (and TLS handshake) for every request")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout of one request")
	startTimeout := flag.Duration("start-timeout", 60*time.Second, "how long to wait for the first SVID")
	hint := flag.String("svid-hint", "", "present the SVID with this hint")
	svidID := flag.String("svid-id", "", "present the SVID with this SPIFFE ID")
	jwtAudience := flag.String("jwt-audience", "", "fetch a JWT-SVID for this audience per request and send it as 'Authorization: Bearer'")
	flag.Parse()

	if *url == "" {
		peer.Fail("flags", fmt.Errorf("-url is required"))
	}
	authorizer, described, err := peer.Authorizer(serverIDs, *serverMemberOf, *serverAny)
	if err != nil {
		peer.Fail("server authorizer (-server-id, -server-member-of or -server-any)", err)
	}
	clientOpts, err := common.ClientOptions()
	if err != nil {
		peer.Fail("workload api", err)
	}

	ctx, cancel := peer.SignalContext()
	defer cancel()

	client, err := workloadapi.New(ctx, clientOpts...)
	if err != nil {
		peer.Fail("workload api client", err)
	}
	defer client.Close()
	sourceOpts := []workloadapi.X509SourceOption{workloadapi.WithClient(client)}
	if picker := peer.X509Picker(*hint, *svidID); picker != nil {
		sourceOpts = append(sourceOpts, workloadapi.WithDefaultX509SVIDPicker(picker))
	}
	startCtx, startCancel := context.WithTimeout(ctx, *startTimeout)
	source, err := workloadapi.NewX509Source(startCtx, sourceOpts...)
	startCancel()
	if err != nil {
		peer.Fail("x509 source", err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		peer.Fail("x509 svid", err)
	}
	fields := peer.SVIDFields(svid)
	fields["server_authorizer"] = described
	peer.Emit("started", fields)
	go peer.WatchSource(ctx, source)

	httpClient := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			TLSClientConfig:   tlsconfig.MTLSClientConfig(source, source, authorizer),
			DisableKeepAlives: *freshConns,
			ForceAttemptHTTP2: true,
		},
	}

	s := &summary{
		seen: map[string]bool{}, errors: map[string]int{}, keyExchanges: map[string]int{},
		tlsVersions: map[string]int{}, statusCounts: map[int]int{}, started: time.Now(),
	}
	durationMode := *duration > 0
	var deadline time.Time
	if durationMode {
		deadline = time.Now().Add(*duration)
	}
	for i := 0; ; i++ {
		if durationMode {
			if !time.Now().Before(deadline) {
				break
			}
		} else if i >= *n {
			break
		}
		if ctx.Err() != nil {
			break
		}
		once(ctx, httpClient, client, *url, *jwtAudience, i, !durationMode, s)
		if *interval > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*interval):
			}
		}
	}

	errs := make([]peer.Fields, 0, len(s.errors))
	for text, count := range s.errors {
		errs = append(errs, peer.Fields{"error": text, "count": count})
	}
	sort.Slice(errs, func(a, b int) bool { return errs[a]["error"].(string) < errs[b]["error"].(string) })
	statuses := map[string]int{}
	for code, count := range s.statusCounts {
		statuses[fmt.Sprint(code)] = count
	}
	peer.Emit("summary", peer.Fields{
		"ok": s.ok, "failed": s.failed, "server_serials": s.serials, "errors": errs,
		"key_exchanges": s.keyExchanges, "tls_versions": s.tlsVersions, "statuses": statuses,
		"elapsed_ms":     time.Since(s.started).Milliseconds(),
		"first_error_at": s.firstErrorAt, "last_error_at": s.lastErrorAt,
	})
	if s.failed > 0 {
		os.Exit(2)
	}
}

// once makes request i and records it. A non-2xx status counts as a success
// of the transport (the status is reported); only transport/TLS errors fail.
func once(ctx context.Context, httpClient *http.Client, wl *workloadapi.Client, url, jwtAudience string, i int, verbose bool, s *summary) {
	fail := func(err error) {
		s.failed++
		s.errors[err.Error()]++
		now := time.Now().UTC().Format(time.RFC3339Nano)
		if s.firstErrorAt == "" {
			s.firstErrorAt = now
		}
		s.lastErrorAt = now
		peer.Emit("request_error", peer.Fields{"n": i, "error": err.Error()})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fail(err)
		return
	}
	if jwtAudience != "" {
		token, err := wl.FetchJWTSVID(ctx, jwtsvid.Params{Audience: jwtAudience})
		if err != nil {
			fail(fmt.Errorf("fetch JWT-SVID: %w", err))
			return
		}
		req.Header.Set("Authorization", "Bearer "+token.Marshal())
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		fail(err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		fail(fmt.Errorf("read body: %w", err))
		return
	}
	s.ok++
	s.statusCounts[resp.StatusCode]++
	fields := peer.TLSFields(resp.TLS)
	s.keyExchanges[fields["key_exchange"].(string)]++
	s.tlsVersions[fields["tls_version"].(string)]++
	serial, _ := fields["peer_serial_hex"].(string)
	newSerial := serial != "" && !s.seen[serial]
	if newSerial {
		s.seen[serial] = true
		s.serials = append(s.serials, serial)
	}
	fields["n"] = i
	fields["status"] = resp.StatusCode
	fields["body"] = string(body)
	fields["proto"] = resp.Proto
	switch {
	case verbose:
		peer.Emit("response", fields)
	case newSerial:
		peer.Emit("server_serial", fields)
	}
}
