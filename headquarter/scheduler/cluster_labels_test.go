package scheduler

import (
	"testing"

	"github.com/garrisonhq/garrison/headquarter/app"
	"github.com/garrisonhq/garrison/internal/agent"
)

// On Nomad the agent registers containers labelled garrison.service: an
// app's containers carry it by default, named as on one machine, and not
// when the app registers itself or not at all.
func TestClusterAppLabelsContainersForTheAgent(t *testing.T) {
	for _, tc := range []struct {
		labels string
		want   string
	}{
		{``, "shop_web"},
		{`,"labels":{"GARRISON_SERVICE":"web"}`, "web"},
		{`,"labels":{"garrison.service":"given"}`, "given"},
		{`,"labels":{"GARRISON_REGISTER":"self"}`, ""},
		{`,"labels":{"GARRISON_REGISTER":"off"}`, ""},
	} {
		a, err := app.Parse([]byte(`{"id":"/shop/web","instances":1,"cpus":0.1,"mem":32,
			"container":{"type":"DOCKER","docker":{"image":"shop/web:1"}}`+tc.labels+`}`), app.Environment{Hostname: "h"})
		if err != nil {
			t.Fatal(err)
		}
		before := len(a.Labels)
		if got := clusterApp(a).Task.Labels[agent.LabelService]; got != tc.want {
			t.Errorf("labels %s: garrison.service %q, want %q", tc.labels, got, tc.want)
		}
		if len(a.Labels) != before {
			t.Errorf("labels %s: the app's own labels changed: %v", tc.labels, a.Labels)
		}
	}
	// A command app runs under raw_exec: no container, no label.
	a, err := app.Parse([]byte(`{"id":"/shop/cmd","cmd":"sleep 1","instances":1,"cpus":0.1,"mem":32}`), app.Environment{Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := clusterApp(a).Task.Labels[agent.LabelService]; ok {
		t.Errorf("a command app got garrison.service %q", got)
	}
}
