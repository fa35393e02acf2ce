// Package push is the one shape every Git provider's push notification is
// normalised to, and the branch and path filters a project applies to it.
package push

import (
	"regexp"
	"strings"
)

// ZeroSHA is the revision Git providers send for a ref that did not exist
// before (before) or no longer exists (after).
const ZeroSHA = "0000000000000000000000000000000000000000"

// Push is one ref update.
type Push struct {
	// Provider names the sender: github, gitlab, gitea, forgejo, generic.
	Provider string `json:"provider"`
	// Delivery is the sender's id of this notification; a redelivery
	// carries the same one.
	Delivery string `json:"delivery,omitempty"`
	// RepoURL is where the revision can be fetched; RepoName the
	// provider's full name (owner/name) when it has one.
	RepoURL  string `json:"repoURL"`
	RepoName string `json:"repoName,omitempty"`
	// Ref is the full ref, refs/heads/main or refs/tags/v1.
	Ref    string `json:"ref"`
	Before string `json:"before"`
	After  string `json:"after"`
	// Deleted is true when the ref was deleted: nothing to build.
	Deleted bool     `json:"deleted,omitempty"`
	Commits []Commit `json:"commits,omitempty"`
	// Committer made the head commit (the pusher when no commit says).
	Committer Person `json:"committer"`
	// Pusher is the account that pushed, when the sender says.
	Pusher string `json:"pusher,omitempty"`
}

// Commit is one commit of a push with the files it touched.
type Commit struct {
	ID        string   `json:"id"`
	Message   string   `json:"message,omitempty"`
	Timestamp string   `json:"timestamp,omitempty"`
	Author    Person   `json:"author"`
	Committer Person   `json:"committer"`
	Added     []string `json:"added,omitempty"`
	Modified  []string `json:"modified,omitempty"`
	Removed   []string `json:"removed,omitempty"`
}

// Person is a commit author or committer.
type Person struct {
	Name     string `json:"name,omitempty"`
	Email    string `json:"email,omitempty"`
	Username string `json:"username,omitempty"`
}

// Branch returns the branch name of a refs/heads/ ref, else "".
func (p Push) Branch() string {
	b, ok := strings.CutPrefix(p.Ref, "refs/heads/")
	if !ok {
		return ""
	}
	return b
}

// Tag returns the tag name of a refs/tags/ ref, else "".
func (p Push) Tag() string {
	t, ok := strings.CutPrefix(p.Ref, "refs/tags/")
	if !ok {
		return ""
	}
	return t
}

// IsDelete reports whether the push removed its ref.
func (p Push) IsDelete() bool {
	return p.Deleted || p.After == ZeroSHA || p.After == ""
}

// Files returns every path the push's commits added, modified or removed,
// each once, in first-seen order.
func (p Push) Files() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range p.Commits {
		for _, list := range [][]string{c.Added, c.Modified, c.Removed} {
			for _, f := range list {
				if !seen[f] {
					seen[f] = true
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// Filter decides which pushes of a project start a run. Patterns are globs
// over slash-separated names: * matches within one segment, ** across
// segments, ? one character. Empty lists match everything.
type Filter struct {
	// Branches match the branch name (main, release/*); a push of a tag
	// matches when Tags does.
	Branches []string `json:"branches,omitempty" yaml:"branches,omitempty"`
	Tags     []string `json:"tags,omitempty" yaml:"tags,omitempty"`
	// Paths: at least one changed file must match. A push whose commits
	// list no files (a sender that does not say) is not filtered out.
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty"`
}

// Match reports whether p passes the filter, and why not.
func (f Filter) Match(p Push) (bool, string) {
	switch {
	case p.Branch() != "":
		if len(f.Branches) > 0 && !anyMatch(f.Branches, p.Branch()) {
			return false, "branch " + p.Branch() + " matches no branch filter"
		}
	case p.Tag() != "":
		if len(f.Tags) == 0 && len(f.Branches) > 0 {
			return false, "tag " + p.Tag() + ": the project builds branches only"
		}
		if len(f.Tags) > 0 && !anyMatch(f.Tags, p.Tag()) {
			return false, "tag " + p.Tag() + " matches no tag filter"
		}
	default:
		return false, "ref " + p.Ref + " is neither a branch nor a tag"
	}
	if len(f.Paths) > 0 {
		files := p.Files()
		if len(files) == 0 {
			return true, ""
		}
		for _, file := range files {
			if anyMatch(f.Paths, file) {
				return true, ""
			}
		}
		return false, "no changed file matches a path filter"
	}
	return true, ""
}

func anyMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if Glob(p).MatchString(name) {
			return true
		}
	}
	return false
}

// Glob compiles a glob to an anchored regular expression: * matches within
// one path segment, ** any number of segments, ? one non-slash character.
func Glob(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			if i+1 < len(pattern) && pattern[i+1] == '*' {
				i++
				// "**/" also matches no directory at all.
				if i+1 < len(pattern) && pattern[i+1] == '/' {
					i++
					b.WriteString("(?:.*/)?")
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}
