package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/garrisonhq/garrison/ci/push"
)

// parseGitLab reads GitLab's hook: X-Gitlab-Token is the secret itself.
func parseGitLab(r *http.Request, body []byte, secret string) (delivery, error) {
	tok := r.Header.Get("X-Gitlab-Token")
	if tok == "" {
		return delivery{}, unauthorizedError{"missing X-Gitlab-Token (set the hook's secret token)"}
	}
	if !tokenEqual(secret, tok) {
		return delivery{}, unauthorizedError{"X-Gitlab-Token does not match the project's secret"}
	}
	switch ev := r.Header.Get("X-Gitlab-Event"); ev {
	case "Push Hook", "Tag Push Hook":
	default:
		return delivery{kind: kindIgnored, reason: fmt.Sprintf("event %q", ev)}, nil
	}
	var g struct {
		ObjectKind   string `json:"object_kind"`
		Ref          string `json:"ref"`
		Before       string `json:"before"`
		After        string `json:"after"`
		UserName     string `json:"user_name"`
		UserUsername string `json:"user_username"`
		UserEmail    string `json:"user_email"`
		Project      struct {
			PathWithNamespace string `json:"path_with_namespace"`
			GitHTTPURL        string `json:"git_http_url"`
		} `json:"project"`
		Commits []struct {
			ID        string `json:"id"`
			Message   string `json:"message"`
			Timestamp string `json:"timestamp"`
			Author    struct {
				Name  string `json:"name"`
				Email string `json:"email"`
			} `json:"author"`
			Added    []string `json:"added"`
			Modified []string `json:"modified"`
			Removed  []string `json:"removed"`
		} `json:"commits"`
	}
	if err := json.Unmarshal(body, &g); err != nil {
		return delivery{}, fmt.Errorf("push payload: %w", err)
	}
	if g.ObjectKind != "push" && g.ObjectKind != "tag_push" {
		return delivery{kind: kindIgnored, reason: fmt.Sprintf("object_kind %q", g.ObjectKind)}, nil
	}
	if g.Ref == "" || g.After == "" {
		return delivery{}, fmt.Errorf("push payload: ref and after are required")
	}
	p := push.Push{
		// Idempotency-Key (GitLab 17.4+) stays the same on retries.
		Delivery: firstOf(r.Header.Get("Idempotency-Key"), r.Header.Get("X-Gitlab-Event-UUID")),
		RepoURL:  g.Project.GitHTTPURL, RepoName: g.Project.PathWithNamespace,
		Ref: g.Ref, Before: g.Before, After: g.After, Pusher: g.UserUsername,
		Committer: push.Person{Name: g.UserName, Email: g.UserEmail, Username: g.UserUsername},
	}
	for _, c := range g.Commits {
		author := push.Person{Name: c.Author.Name, Email: c.Author.Email}
		p.Commits = append(p.Commits, push.Commit{
			ID: c.ID, Message: c.Message, Timestamp: c.Timestamp, Author: author, Committer: author,
			Added: c.Added, Modified: c.Modified, Removed: c.Removed,
		})
	}
	// GitLab lists commits oldest first; the last is the head.
	if n := len(p.Commits); n > 0 && p.Commits[n-1].ID == p.After {
		p.Committer = p.Commits[n-1].Committer
	}
	return delivery{push: p}, nil
}
