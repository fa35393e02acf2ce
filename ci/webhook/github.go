package webhook

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/garrisonhq/garrison/ci/push"
)

// parseGitHub reads GitHub's hook: X-Hub-Signature-256 is "sha256=" and the
// hex HMAC of the raw body; the legacy SHA-1 header is ignored.
func parseGitHub(r *http.Request, body []byte, secret string) (delivery, error) {
	sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	if !ok {
		return delivery{}, unauthorizedError{"missing X-Hub-Signature-256 (set the hook's secret)"}
	}
	if !hmacHex(secret, body, sig) {
		return delivery{}, unauthorizedError{"X-Hub-Signature-256 does not match the project's secret"}
	}
	payload, err := githubPayload(r, body)
	if err != nil {
		return delivery{}, err
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "ping":
		return delivery{kind: kindPing}, nil
	case "push":
		p, err := parseGitHubPush(payload)
		p.Delivery = r.Header.Get("X-GitHub-Delivery")
		return delivery{push: p}, err
	default:
		return delivery{kind: kindIgnored, reason: fmt.Sprintf("event %q", ev)}, nil
	}
}

// githubPayload unwraps a form-encoded delivery (the hook's content type
// set to application/x-www-form-urlencoded): the JSON is its payload field.
func githubPayload(r *http.Request, body []byte) ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return body, nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("form-encoded body: %w", err)
	}
	if !form.Has("payload") {
		return nil, fmt.Errorf("form-encoded body without a payload field")
	}
	return []byte(form.Get("payload")), nil
}

// githubPush is the part of GitHub's push payload garrison reads; Gitea and
// Forgejo send the same shape.
type githubPush struct {
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
	} `json:"repository"`
	Pusher struct {
		Name  string `json:"name"`
		Login string `json:"login"` // Gitea
		Email string `json:"email"`
	} `json:"pusher"`
	HeadCommit *githubCommit  `json:"head_commit"`
	Commits    []githubCommit `json:"commits"`
}

type githubCommit struct {
	ID        string       `json:"id"`
	Message   string       `json:"message"`
	Timestamp string       `json:"timestamp"`
	Author    githubPerson `json:"author"`
	Committer githubPerson `json:"committer"`
	Added     []string     `json:"added"`
	Modified  []string     `json:"modified"`
	Removed   []string     `json:"removed"`
}

type githubPerson struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

func (p githubPerson) person() push.Person {
	return push.Person{Name: p.Name, Email: p.Email, Username: p.Username}
}

func parseGitHubPush(body []byte) (push.Push, error) {
	var g githubPush
	if err := json.Unmarshal(body, &g); err != nil {
		return push.Push{}, fmt.Errorf("push payload: %w", err)
	}
	if g.Ref == "" || g.After == "" {
		return push.Push{}, fmt.Errorf("push payload: ref and after are required")
	}
	p := push.Push{
		RepoURL: g.Repository.CloneURL, RepoName: g.Repository.FullName,
		Ref: g.Ref, Before: g.Before, After: g.After, Deleted: g.Deleted,
		Pusher: firstOf(g.Pusher.Name, g.Pusher.Login),
	}
	for _, c := range g.Commits {
		p.Commits = append(p.Commits, push.Commit{
			ID: c.ID, Message: c.Message, Timestamp: c.Timestamp,
			Author: c.Author.person(), Committer: c.Committer.person(),
			Added: c.Added, Modified: c.Modified, Removed: c.Removed,
		})
	}
	switch {
	case g.HeadCommit != nil:
		p.Committer = g.HeadCommit.Committer.person()
	case len(g.Commits) > 0:
		p.Committer = g.Commits[len(g.Commits)-1].Committer.person()
	default:
		p.Committer = push.Person{Name: p.Pusher, Email: g.Pusher.Email}
	}
	return p, nil
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
