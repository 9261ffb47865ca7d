// Command mtls-server is an HTTPS server with go-spiffe mutual TLS. It takes
// its X.509-SVID and bundles from the Workload API, authorizes clients by
// SPIFFE ID, answers every request with the client's SPIFFE ID, and reports
// as JSON lines on stdout:
//
//	{"event":"listening","addr":"127.0.0.1:PORT","spiffe_id":...,"authorizer":...}
//	{"event":"request","peer_id":...,"tls_version":"TLS 1.3","key_exchange":"X25519MLKEM768",...}
//	{"event":"server_error","error":"http: TLS handshake error from ..."}
//	{"event":"svid_update",...}   (own SVID rotated)
//
// It runs until SIGINT/SIGTERM or -duration.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"zt-interop/internal/peer"
)

// errorLog turns net/http's error log (TLS handshake failures among them)
// into events.
type errorLog struct{}

func (errorLog) Write(p []byte) (int, error) {
	peer.Emit("server_error", peer.Fields{"error": strings.TrimSpace(string(p))})
	return len(p), nil
}

func main() {
	var common peer.Common
	common.Register()
	var ids peer.Strings
	flag.Var(&ids, "authorize-id", "SPIFFE ID a client may have (repeatable)")
	memberOf := flag.String("authorize-member-of", "", "trust domain every client must belong to")
	anyID := flag.Bool("authorize-any", false, "accept any SPIFFE ID the bundles verify")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	hint := flag.String("svid-hint", "", "serve the SVID with this hint")
	svidID := flag.String("svid-id", "", "serve the SVID with this SPIFFE ID")
	duration := flag.Duration("duration", 0, "stop after this long (0: run until signaled)")
	startTimeout := flag.Duration("start-timeout", 60*time.Second, "how long to wait for the first SVID")
	flag.Parse()

	if len(ids) == 0 && *memberOf == "" && !*anyID {
		*anyID = true
	}
	authorizer, described, err := peer.Authorizer(ids, *memberOf, *anyID)
	if err != nil {
		peer.Fail("authorizer", err)
	}
	clientOpts, err := common.ClientOptions()
	if err != nil {
		peer.Fail("workload api", err)
	}

	ctx, cancel := peer.SignalContext()
	defer cancel()
	if *duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	sourceOpts := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(clientOpts...)}
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

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		peer.Fail("listen", err)
	}
	server := &http.Server{
		TLSConfig:         tlsconfig.MTLSServerConfig(source, source, authorizer),
		ErrorLog:          log.New(errorLog{}, "", 0),
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fields := peer.TLSFields(r.TLS)
			id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
			if err != nil {
				// MTLSServerConfig verified the chain; this cannot happen.
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fields["method"] = r.Method
			fields["path"] = r.URL.Path
			fields["proto"] = r.Proto
			if auth := r.Header.Get("Authorization"); auth != "" {
				fields["authorization"] = auth
			}
			peer.Emit("request", fields)
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(id.String()))
		}),
	}

	fields := peer.SVIDFields(svid)
	fields["addr"] = ln.Addr().String()
	fields["authorizer"] = described
	peer.Emit("listening", fields)

	go peer.WatchSource(ctx, source)
	go func() {
		<-ctx.Done()
		shutdownCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = server.Shutdown(shutdownCtx)
	}()
	if err := server.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		peer.Fail("serve", err)
	}
	peer.Emit("stopped", nil)
}
