package peer

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// FetchJWT asks the Workload API for JWT-SVIDs until it gets an answer or
// ctx ends (an entry may still be on its way to the agent); the last error is
// returned. With all unset it returns the agent's first JWT-SVID only.
func FetchJWT(ctx context.Context, client *workloadapi.Client, params jwtsvid.Params, all bool, retry time.Duration) ([]*jwtsvid.SVID, error) {
	for attempt := 1; ; attempt++ {
		var (
			svids []*jwtsvid.SVID
			err   error
		)
		if all {
			svids, err = client.FetchJWTSVIDs(ctx, params)
		} else {
			var svid *jwtsvid.SVID
			if svid, err = client.FetchJWTSVID(ctx, params); err == nil {
				svids = []*jwtsvid.SVID{svid}
			}
		}
		if err == nil {
			return svids, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("after %d attempts: %w", attempt, err)
		case <-time.After(retry):
		}
	}
}

// JWTFields describes a JWT-SVID, token included.
func JWTFields(s *jwtsvid.SVID) Fields {
	f := Fields{
		"spiffe_id": s.ID.String(),
		"audience":  s.Audience,
		"expiry":    s.Expiry.UTC().Format(time.RFC3339),
		"token":     s.Marshal(),
	}
	if s.Hint != "" {
		f["hint"] = s.Hint
	}
	return f
}
