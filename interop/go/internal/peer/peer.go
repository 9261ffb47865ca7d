// Package peer holds what the interop programs share: JSON-lines reporting,
// Workload API options from flags, SVID pickers, authorizers and a
// description of a TLS connection.
package peer

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// Fields is one JSON-lines event, without its "event" and "ts" keys.
type Fields map[string]any

var outMu sync.Mutex

// Emit writes one event as a single JSON object on stdout: {"event": name,
// "ts": RFC 3339 time with nanoseconds, ...fields}. Safe for concurrent use.
func Emit(name string, fields Fields) {
	obj := make(map[string]any, len(fields)+2)
	for k, v := range fields {
		obj[k] = v
	}
	obj["event"] = name
	obj["ts"] = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(obj)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"event":"error","error":%q}`, "encoding event "+name+": "+err.Error()))
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

// Fail reports err as an {"event":"error"} line and exits with status 1.
func Fail(what string, err error) {
	Emit("error", Fields{"error": fmt.Sprintf("%s: %v", what, err)})
	os.Exit(1)
}

// Strings is a repeatable string flag.
type Strings []string

func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set appends one value.
func (s *Strings) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// Common holds the flags every program takes.
type Common struct {
	Socket  string
	Backoff time.Duration
}

// Register adds -socket and -backoff to the default flag set.
func (c *Common) Register() {
	flag.StringVar(&c.Socket, "socket", "", "Workload API address (unix:///path); default: $SPIFFE_ENDPOINT_SOCKET")
	flag.DurationVar(&c.Backoff, "backoff", 0, "constant retry interval for Workload API streams (0: go-spiffe's default, linear 1s..30s)")
}

// ClientOptions turns the common flags into go-spiffe client options.
func (c *Common) ClientOptions() ([]workloadapi.ClientOption, error) {
	var opts []workloadapi.ClientOption
	switch {
	case c.Socket != "":
		opts = append(opts, workloadapi.WithAddr(c.Socket))
	default:
		if _, ok := workloadapi.GetDefaultAddress(); !ok {
			return nil, errors.New("no Workload API address: pass -socket unix:///path or set SPIFFE_ENDPOINT_SOCKET")
		}
	}
	if c.Backoff > 0 {
		opts = append(opts, workloadapi.WithBackoffStrategy(constantBackoff(c.Backoff)))
	}
	return opts, nil
}

type constantBackoff time.Duration

func (b constantBackoff) NewBackoff() workloadapi.Backoff { return b }
func (b constantBackoff) Next() time.Duration             { return time.Duration(b) }
func (b constantBackoff) Reset()                          {}

// SignalContext is canceled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// X509Picker returns a go-spiffe SVID picker choosing by hint and/or SPIFFE ID,
// or nil when neither is set (go-spiffe then takes the first SVID).
func X509Picker(hint, id string) func([]*x509svid.SVID) *x509svid.SVID {
	if hint == "" && id == "" {
		return nil
	}
	return func(svids []*x509svid.SVID) *x509svid.SVID {
		for _, s := range svids {
			if (hint == "" || s.Hint == hint) && (id == "" || s.ID.String() == id) {
				return s
			}
		}
		Emit("picker_miss", Fields{"hint": hint, "spiffe_id": id, "svids": len(svids)})
		return svids[0]
	}
}

// Authorizer builds a peer authorizer from repeatable exact IDs, a trust
// domain, or "any", and describes it.
func Authorizer(ids []string, memberOf string, anyID bool) (tlsconfig.Authorizer, string, error) {
	set := 0
	for _, b := range []bool{len(ids) > 0, memberOf != "", anyID} {
		if b {
			set++
		}
	}
	if set != 1 {
		return nil, "", errors.New("give exactly one of: exact IDs (repeatable), a trust domain, or any")
	}
	switch {
	case len(ids) > 0:
		parsed := make([]spiffeid.ID, 0, len(ids))
		for _, s := range ids {
			id, err := spiffeid.FromString(s)
			if err != nil {
				return nil, "", fmt.Errorf("SPIFFE ID %q: %w", s, err)
			}
			parsed = append(parsed, id)
		}
		return tlsconfig.AuthorizeOneOf(parsed...), "one-of " + strings.Join(ids, ","), nil
	case memberOf != "":
		td, err := spiffeid.TrustDomainFromString(memberOf)
		if err != nil {
			return nil, "", fmt.Errorf("trust domain %q: %w", memberOf, err)
		}
		return tlsconfig.AuthorizeMemberOf(td), "member-of " + td.String(), nil
	default:
		return tlsconfig.AuthorizeAny(), "any", nil
	}
}

// CertFields describes a leaf certificate: SPIFFE ID, serial (decimal and
// hex), validity and SHA-256 fingerprint of the DER.
func CertFields(prefix string, cert *x509.Certificate) Fields {
	f := Fields{
		prefix + "serial":      cert.SerialNumber.String(),
		prefix + "serial_hex":  hex.EncodeToString(cert.SerialNumber.Bytes()),
		prefix + "not_before":  cert.NotBefore.UTC().Format(time.RFC3339),
		prefix + "not_after":   cert.NotAfter.UTC().Format(time.RFC3339),
		prefix + "fingerprint": Fingerprint(cert),
	}
	if id, err := x509svid.IDFromCert(cert); err == nil {
		f[prefix+"id"] = id.String()
	}
	return f
}

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// TLSFields describes a finished handshake: version, cipher suite, the
// negotiated key-exchange group (ConnectionState.CurveID, Go 1.25+), ALPN
// and the peer's leaf certificate.
func TLSFields(cs *tls.ConnectionState) Fields {
	f := Fields{
		"tls_version":     tls.VersionName(cs.Version),
		"cipher_suite":    tls.CipherSuiteName(cs.CipherSuite),
		"key_exchange":    cs.CurveID.String(),
		"key_exchange_id": uint16(cs.CurveID),
		"alpn":            cs.NegotiatedProtocol,
	}
	if len(cs.PeerCertificates) > 0 {
		for k, v := range CertFields("peer_", cs.PeerCertificates[0]) {
			f[k] = v
		}
	}
	return f
}

// SVIDFields describes an X.509-SVID.
func SVIDFields(s *x509svid.SVID) Fields {
	f := CertFields("", s.Certificates[0])
	f["spiffe_id"] = s.ID.String()
	delete(f, "id")
	if s.Hint != "" {
		f["hint"] = s.Hint
	}
	return f
}

// WatchSource emits an "svid_update" event each time an X509Source
// publishes a new default SVID, until ctx ends.
func WatchSource(ctx context.Context, source *workloadapi.X509Source) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-source.Updated():
			svid, err := source.GetX509SVID()
			if err != nil {
				Emit("svid_error", Fields{"error": err.Error()})
				continue
			}
			Emit("svid_update", SVIDFields(svid))
		}
	}
}
