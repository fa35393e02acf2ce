package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// segmentRE is one segment of an app id (PathId.scala): DNS-like labels,
// lower case, no leading or trailing "-". "." and ".." are not segments of a
// canonical id; they are resolved (relative ids) or rejected (absolute ones).
var segmentRE = regexp.MustCompile(`^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$`)

// CanonicalID makes id absolute. A relative id ("web", "../web") is resolved
// against base (the group it is given in; "/" at the top), "." and ".."
// segments included. Empty segments are dropped, so "/a//b/" is "/a/b". An
// absolute id keeps any "." or ".." segments for Validate to reject, as
// Marathon allows them only in relative ids.
func CanonicalID(id, base string) string {
	var segs []string
	if !strings.HasPrefix(id, "/") {
		segs = splitID(base)
	}
	for _, s := range strings.Split(id, "/") {
		switch {
		case s == "":
		case !strings.HasPrefix(id, "/") && s == ".":
		case !strings.HasPrefix(id, "/") && s == "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	return "/" + strings.Join(segs, "/")
}

func splitID(id string) []string {
	return slices.DeleteFunc(strings.Split(id, "/"), func(s string) bool { return s == "" })
}

// parentID is the group that holds id: "/prod" for "/prod/web".
func parentID(id string) string {
	i := strings.LastIndex(id, "/")
	if i <= 0 {
		return "/"
	}
	return id[:i]
}

// idErrors lists what is wrong with a canonical app id, in Marathon's words.
func idErrors(id string) []string {
	var out []string
	if !strings.HasPrefix(id, "/") {
		out = append(out, "path must be absolute")
	}
	segs := splitID(id)
	if len(segs) == 0 {
		return append(out, "must not be root")
	}
	for _, s := range segs {
		if !segmentRE.MatchString(s) {
			out = append(out, fmt.Sprintf("must fully match regular expression '%s' (segment %q)", segmentRE.String(), s))
			break
		}
	}
	// Marathon's routes are {id:.+} followed by these words.
	switch segs[len(segs)-1] {
	case "restart", "tasks", "versions":
		out = append(out, "must not end with any of the following reserved keywords: restart, tasks, versions")
	}
	return out
}

// SafeID is the app id as task ids and the registry spell it: no leading
// "/", the other "/" as "_" ("/prod/web" -> "prod_web"). Ids cannot hold "_",
// so it maps back.
func SafeID(appID string) string {
	return strings.ReplaceAll(strings.TrimPrefix(appID, "/"), "/", "_")
}

// ServiceName is the app's name in the registry, /service/<name>/<instance>.
func ServiceName(appID string) string { return SafeID(appID) }

// TaskID returns a new task id for the app in Marathon's legacy form
// <safeAppId>.<uuid>: go-marathon's KillTask takes the app id to be
// everything before the last ".", which only this form satisfies.
func TaskID(appID string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var u [36]byte
	hex.Encode(u[0:8], b[0:4])
	u[8] = '-'
	hex.Encode(u[9:13], b[4:6])
	u[13] = '-'
	hex.Encode(u[14:18], b[6:8])
	u[18] = '-'
	hex.Encode(u[19:23], b[8:10])
	u[23] = '-'
	hex.Encode(u[24:], b[10:])
	return SafeID(appID) + "." + string(u[:])
}

// AppIDFromTaskID recovers the app id from a task id in the legacy form
// (<safeAppId>.<uuid> or <safeAppId>_<uuid>) or Marathon 1.4+'s
// <safeAppId>.instance-<uuid>._app.<n> / .marathon-<uuid>.
func AppIDFromTaskID(taskID string) (string, error) {
	safe := ""
	for _, sep := range []string{".instance-", ".marathon-"} {
		if i := strings.Index(taskID, sep); i > 0 {
			safe = taskID[:i]
			break
		}
	}
	if safe == "" {
		i := strings.LastIndexAny(taskID, "._")
		if i <= 0 || i == len(taskID)-1 {
			return "", fmt.Errorf("task id %q: not of the form <appId>.<uuid>", taskID)
		}
		safe = taskID[:i]
	}
	id := "/" + strings.ReplaceAll(safe, "_", "/")
	if errs := idErrors(id); len(errs) > 0 {
		return "", fmt.Errorf("task id %q: app id %s %s", taskID, id, errs[0])
	}
	return id, nil
}

// versionLayout is Marathon's timestamp: ISO-8601 UTC with milliseconds.
const versionLayout = "2006-01-02T15:04:05.000Z"

// FormatVersion spells t as Marathon does, e.g. "2015-09-25T15:13:48.343Z".
func FormatVersion(t time.Time) string { return t.UTC().Format(versionLayout) }

// ParseVersion reads an ISO-8601 timestamp (any fraction, any offset).
func ParseVersion(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("version %q: not an ISO-8601 timestamp", s)
	}
	return t.UTC(), nil
}

// NewVersion is the version for a change made at now: UTC, cut to the
// millisecond so it equals its own formatted-and-parsed form.
func NewVersion(now time.Time) time.Time { return now.UTC().Truncate(time.Millisecond) }

// AbsoluteIDProblem says what is wrong with id as an absolute app id named
// in a file (an autoscaling rule, a pipeline), in a file reader's words, or
// "" when it is a valid one. The API's own messages are Marathon's
// (Validate); the syntax is the same.
func AbsoluteIDProblem(id string) string {
	switch {
	case !strings.HasPrefix(id, "/"):
		return "must be an absolute app id such as /ktv/account"
	case id == "/":
		return "must not be the root group"
	}
	for _, s := range strings.Split(id[1:], "/") {
		if !segmentRE.MatchString(s) {
			return fmt.Sprintf("segment %q must be lower-case letters, digits, '-' and '.' (as Marathon app ids)", s)
		}
	}
	return ""
}
