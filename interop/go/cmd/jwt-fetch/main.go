// Command jwt-fetch fetches JWT-SVIDs for an audience from the Workload API
// (SPIRE's agent or any other), prints each as a JSON line and exits:
//
//	{"event":"jwt_svid","spiffe_id":...,"audience":[...],"expiry":...,"hint":...,"token":...}
//
// It retries until -timeout while the agent has no identity for the caller
// yet (an entry still propagating), then fails with {"event":"error"}.
package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"zt-interop/internal/peer"
)

func main() {
	var common peer.Common
	common.Register()
	var audiences peer.Strings
	flag.Var(&audiences, "audience", "audience (repeatable; the first is the main one)")
	subject := flag.String("spiffe-id", "", "ask for the JWT-SVID of this SPIFFE ID (when several entries match)")
	all := flag.Bool("all", false, "print every JWT-SVID the agent returns, not just the first")
	timeout := flag.Duration("timeout", 30*time.Second, "give up after this long")
	retry := flag.Duration("retry", 200*time.Millisecond, "pause between attempts")
	flag.Parse()

	if len(audiences) == 0 {
		peer.Fail("flags", fmt.Errorf("-audience is required"))
	}
	params := jwtsvid.Params{Audience: audiences[0], ExtraAudiences: audiences[1:]}
	if *subject != "" {
		id, err := spiffeid.FromString(*subject)
		if err != nil {
			peer.Fail("-spiffe-id", err)
		}
		params.Subject = id
	}
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
	svids, err := peer.FetchJWT(ctx, client, params, *all, *retry)
	if err != nil {
		peer.Fail("fetch JWT-SVID", err)
	}
	for _, s := range svids {
		peer.Emit("jwt_svid", peer.JWTFields(s))
	}
}
