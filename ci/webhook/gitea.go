package webhook

import (
	"fmt"
	"net/http"
)

// parseGitea reads Gitea's and Forgejo's hook: a bare hex HMAC-SHA256 of
// the body in X-Gitea-Signature, or X-Forgejo-Signature from Forgejo. When
// Forgejo's header is present it alone decides: a failing Forgejo signature
// never falls back to another header.
func parseGitea(r *http.Request, body []byte, secret string) (delivery, error) {
	provider, sig := "gitea", r.Header.Get("X-Gitea-Signature")
	event, id := r.Header.Get("X-Gitea-Event"), r.Header.Get("X-Gitea-Delivery")
	if _, ok := r.Header["X-Forgejo-Signature"]; ok {
		provider, sig = "forgejo", r.Header.Get("X-Forgejo-Signature")
		event = firstOf(r.Header.Get("X-Forgejo-Event"), event)
		id = firstOf(r.Header.Get("X-Forgejo-Delivery"), id)
	}
	if sig == "" {
		return delivery{}, unauthorizedError{"missing X-Gitea-Signature (set the hook's secret)"}
	}
	if !hmacHex(secret, body, sig) {
		return delivery{}, unauthorizedError{fmt.Sprintf("signature of %s does not match the project's secret", provider)}
	}
	if event != "push" {
		return delivery{kind: kindIgnored, reason: fmt.Sprintf("event %q", event)}, nil
	}
	p, err := parseGitHubPush(body)
	p.Provider, p.Delivery = provider, id
	return delivery{push: p}, err
}
