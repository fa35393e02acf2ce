package runner

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/garrisonhq/garrison/ci/run"
)

// Mailer sends notification mail (garrison's configured SMTP server).
type Mailer interface {
	Send(ctx context.Context, to []string, subject, body string) error
}

// mail sends the ended run to the recipients; like a URL's, a failure is
// logged and never retried.
func (r *Runner) mail(ctx context.Context, x *run.Run, to []string) {
	if r.cfg.Mail == nil {
		r.cfg.Logger.Warn("runner: the pipeline asks for mail, and this garrison has no SMTP server (--smtp-addr)", "run", x.ID, "to", to)
		return
	}
	subject, body := mailText(x)
	if err := r.cfg.Mail.Send(context.WithoutCancel(ctx), to, subject, body); err != nil {
		r.cfg.Logger.Warn("runner: notification mail failed", "run", x.ID, "to", to, "error", err)
	}
}

// mailText is a run's end as a mail a person reads: what ended how, and
// what it was built from.
func mailText(x *run.Run) (subject, body string) {
	rev := x.Push.After
	if len(rev) > 12 {
		rev = rev[:12]
	}
	ref := strings.TrimPrefix(strings.TrimPrefix(x.Push.Ref, "refs/heads/"), "refs/tags/")
	subject = fmt.Sprintf("[garrison] %s %s (%s %s)", x.ID, x.State, ref, rev)
	var b strings.Builder
	fmt.Fprintf(&b, "Run %s of project %s %s", x.ID, x.Project, x.State)
	if x.Reason != "" {
		fmt.Fprintf(&b, ": %s", x.Reason)
	}
	b.WriteString(".\n\n")
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	committer := x.Push.Committer.Name
	if x.Push.Committer.Email != "" {
		committer += " <" + x.Push.Committer.Email + ">"
	}
	for _, kv := range [][2]string{{"ref", x.Push.Ref}, {"revision", x.Push.After}, {"committer", committer},
		{"version", x.Version}, {"image", x.Image}} {
		if kv[1] != "" {
			fmt.Fprintf(w, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	if x.Started != nil && x.Finished != nil {
		fmt.Fprintf(w, "took:\t%s\n", x.Finished.Sub(*x.Started).Round(time.Second))
	}
	w.Flush()
	if len(x.Steps) > 0 {
		b.WriteString("\nsteps:\n")
		w = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		for _, s := range x.Steps {
			code := "-"
			if s.ExitCode != nil {
				code = fmt.Sprint(*s.ExitCode)
			}
			fmt.Fprintf(w, "  %s\t%s\texit %s\n", s.Name, s.State, code)
		}
		w.Flush()
	}
	fmt.Fprintf(&b, "\nThe log: garrison runs log %s (GET /api/v1/runs/%s/log)\n", x.ID, x.ID)
	return subject, b.String()
}
