// Command jwt-validate validates JWT-SVIDs with go-spiffe's
// jwtsvid.ParseAndValidate for an audience, against either the JWT bundles
// of the Workload API (default) or a bundle file (-bundle-file, a SPIFFE
// bundle or a plain JWKS, for -trust-domain). With -via-agent the agent
// validates instead (the Workload API's ValidateJWTSVID).
//
// Tokens come from -token (repeatable) or, without it, one per line on stdin
// (read as they arrive, so a test can feed tokens over time). One JSON line
// per token:
//
//	{"event":"accept","index":0,"spiffe_id":...,"audience":[...],"expiry":...}
//	{"event":"reject","index":1,"error":...}
//
// It exits 0 after the last token; 1 with {"event":"error"} on a setup error.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"zt-interop/internal/peer"
)

func main() {
	var common peer.Common
	common.Register()
	var audiences peer.Strings
	flag.Var(&audiences, "audience", "accepted audience (repeatable; a token must carry one of them)")
	var tokens peer.Strings
	flag.Var(&tokens, "token", "token to validate (repeatable; default: one per line on stdin)")
	bundleFile := flag.String("bundle-file", "", "SPIFFE bundle or JWKS JSON file to validate against instead of the Workload API")
	trustDomain := flag.String("trust-domain", "", "trust domain of -bundle-file")
	viaAgent := flag.Bool("via-agent", false, "let the agent validate (Workload API ValidateJWTSVID)")
	startTimeout := flag.Duration("start-timeout", 30*time.Second, "how long to wait for the Workload API's JWT bundles")
	flag.Parse()

	if len(audiences) == 0 {
		peer.Fail("flags", errors.New("-audience is required"))
	}
	ctx, cancel := peer.SignalContext()
	defer cancel()

	var validate func(string) (*jwtsvid.SVID, error)
	switch {
	case *bundleFile != "":
		bundles, err := loadBundle(*bundleFile, *trustDomain)
		if err != nil {
			peer.Fail("bundle file", err)
		}
		validate = func(tok string) (*jwtsvid.SVID, error) { return jwtsvid.ParseAndValidate(tok, bundles, audiences) }
		peer.Emit("ready", peer.Fields{"bundle": "file", "trust_domain": *trustDomain})
	case *viaAgent:
		opts, err := common.ClientOptions()
		if err != nil {
			peer.Fail("workload api", err)
		}
		client, err := workloadapi.New(ctx, opts...)
		if err != nil {
			peer.Fail("workload api client", err)
		}
		defer client.Close()
		if len(audiences) != 1 {
			peer.Fail("flags", errors.New("-via-agent takes exactly one -audience"))
		}
		validate = func(tok string) (*jwtsvid.SVID, error) { return client.ValidateJWTSVID(ctx, tok, audiences[0]) }
		peer.Emit("ready", peer.Fields{"bundle": "agent"})
	default:
		opts, err := common.ClientOptions()
		if err != nil {
			peer.Fail("workload api", err)
		}
		startCtx, startCancel := context.WithTimeout(ctx, *startTimeout)
		source, err := workloadapi.NewJWTSource(startCtx, workloadapi.WithClientOptions(opts...))
		startCancel()
		if err != nil {
			peer.Fail("jwt source", err)
		}
		defer source.Close()
		validate = func(tok string) (*jwtsvid.SVID, error) { return jwtsvid.ParseAndValidate(tok, source, audiences) }
		peer.Emit("ready", peer.Fields{"bundle": "workload_api"})
	}

	check := func(i int, tok string) {
		svid, err := validate(tok)
		if err != nil {
			peer.Emit("reject", peer.Fields{"index": i, "error": err.Error()})
			return
		}
		peer.Emit("accept", peer.Fields{
			"index": i, "spiffe_id": svid.ID.String(), "audience": svid.Audience,
			"expiry": svid.Expiry.UTC().Format(time.RFC3339),
		})
	}
	if len(tokens) > 0 {
		for i, tok := range tokens {
			check(i, tok)
		}
		return
	}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 64*1024), 1<<20)
	for i := 0; scanner.Scan(); i++ {
		check(i, strings.TrimSpace(scanner.Text()))
	}
	if err := scanner.Err(); err != nil {
		peer.Fail("stdin", err)
	}
}

// loadBundle reads a SPIFFE bundle (keys with "use") or, when that holds no
// JWT authority, a plain RFC 7517 JWKS.
func loadBundle(path, trustDomain string) (jwtbundle.Source, error) {
	if trustDomain == "" {
		return nil, errors.New("-trust-domain is required with -bundle-file")
	}
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if b, err := spiffebundle.Parse(td, data); err == nil && len(b.JWTAuthorities()) > 0 {
		return b, nil
	}
	b, err := jwtbundle.Parse(td, data)
	if err != nil {
		return nil, fmt.Errorf("neither a SPIFFE bundle with JWT authorities nor a JWKS: %w", err)
	}
	return b, nil
}
