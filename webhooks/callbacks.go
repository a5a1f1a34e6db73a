package webhooks

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/mattermost/mattermost/server/public/model"
)

// CallbackPrefix is the path prefix of Mattermost's callbacks (button
// clicks, dialog submissions, slash commands).
const CallbackPrefix = "/mattermost/"

// ParseCIDRs reads ICA_CALLBACK_ALLOWED_CIDRS: networks ("10.0.0.0/8") or
// single addresses ("10.1.2.3", taken as /32 or /128).
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a network in CIDR form", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// CallbackSources limits who may reach the Mattermost callbacks: with
// allowed networks, a request under CallbackPrefix from any other source
// address is refused before it is read. The source is the connection's
// address (a forwarded-for header is not trusted). The refusal is HTTP 200
// in the form of the callback (an ephemeral message, a dialog error or a
// command reply), since Mattermost turns any other status into a generic
// error and a refusal here usually means the allowed list is wrong.
// Requests outside CallbackPrefix pass untouched.
func CallbackSources(allowed []netip.Prefix, log *slog.Logger, next http.Handler) http.Handler {
	if len(allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, CallbackPrefix) || sourceAllowed(allowed, r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		log.Warn("refused Mattermost callback from a source outside ICA_CALLBACK_ALLOWED_CIDRS", "remote", r.RemoteAddr, "path", r.URL.Path)
		const text = "ICA refuses callbacks from this address. If this is your Mattermost server, add its address to ICA_CALLBACK_ALLOWED_CIDRS."
		var body any
		switch strings.TrimPrefix(r.URL.Path, CallbackPrefix) {
		case "dialogs":
			body = &model.SubmitDialogResponse{Error: text}
		case "slash":
			body = &model.CommandResponse{ResponseType: model.CommandResponseTypeEphemeral, Text: text}
		default:
			body = &model.PostActionIntegrationResponse{EphemeralText: text}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(body)
	})
}

func sourceAllowed(allowed []netip.Prefix, remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// SplitCallbacks serves the Mattermost callbacks on their own listener
// (ICA_CALLBACK_ADDR), so that a network policy can guard that port alone:
// it returns the handler of the main listener (everything but the
// callbacks) and of the callback listener (the callbacks only).
func SplitCallbacks(h http.Handler) (main, callbacks http.Handler) {
	notFound := func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found", http.StatusNotFound)
	}
	main = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, CallbackPrefix) {
			notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	callbacks = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, CallbackPrefix) {
			notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	return main, callbacks
}
