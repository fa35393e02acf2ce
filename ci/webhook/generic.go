package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/garrisonhq/garrison/ci/push"
)

// parseGeneric reads garrison's own hook. It is authenticated either by
// Standard Webhooks headers (webhook-id, webhook-timestamp,
// webhook-signature, keyed with the project's secret) or by the secret as a
// token (Authorization: Bearer, or X-Garrison-Token). The body is a
// push.Push in JSON; X-Garrison-Event: ping answers pong.
func parseGeneric(r *http.Request, body []byte, secret string) (delivery, error) {
	id := r.Header.Get("webhook-id")
	if sig := r.Header.Get("webhook-signature"); sig != "" {
		if ok, why := standardWebhook(secret, id, r.Header.Get("webhook-timestamp"), sig, body, time.Now()); !ok {
			return delivery{}, unauthorizedError{why}
		}
	} else {
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		tok = firstOf(tok, r.Header.Get("X-Garrison-Token"))
		if tok == "" {
			return delivery{}, unauthorizedError{"missing Authorization: Bearer <project secret> (or Standard Webhooks signature)"}
		}
		if !tokenEqual(secret, tok) {
			return delivery{}, unauthorizedError{"token does not match the project's secret"}
		}
		id = firstOf(r.Header.Get("X-Garrison-Delivery"), id)
	}
	if ev := r.Header.Get("X-Garrison-Event"); ev == "ping" {
		return delivery{kind: kindPing}, nil
	} else if ev != "" && ev != "push" {
		return delivery{kind: kindIgnored, reason: fmt.Sprintf("event %q", ev)}, nil
	}
	var p push.Push
	if err := json.Unmarshal(body, &p); err != nil {
		return delivery{}, fmt.Errorf("push payload: %w", err)
	}
	if p.Ref == "" || p.After == "" {
		return delivery{}, fmt.Errorf("push payload: ref and after are required")
	}
	p.Provider, p.Delivery = "generic", id
	return delivery{push: p}, nil
}
