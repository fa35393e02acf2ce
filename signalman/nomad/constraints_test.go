package nomad

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"
)

func TestTranslateConstraints(t *testing.T) {
	host := "${attr.unique.hostname}"
	rack := "${meta.rack}"
	c := func(l, op, r string) *api.Constraint { return &api.Constraint{LTarget: l, Operand: op, RTarget: r} }
	tests := []struct {
		in      []string
		want    []*api.Constraint
		spreads []*api.Spread
	}{
		{[]string{"hostname", "UNIQUE"}, []*api.Constraint{c("", "distinct_hosts", "true")}, nil},
		{[]string{"@hostname", "unique"}, []*api.Constraint{c("", "distinct_hosts", "true")}, nil},
		{[]string{"rack", "UNIQUE"}, []*api.Constraint{c(rack, "distinct_property", "1")}, nil},
		{[]string{"rack", "MAX_PER", "3"}, []*api.Constraint{c(rack, "distinct_property", "3")}, nil},
		{[]string{"hostname", "MAX_PER", "2"}, []*api.Constraint{c(host, "distinct_property", "2")}, nil},
		{[]string{"hostname", "CLUSTER", "node-1"}, []*api.Constraint{c(host, "=", "node-1")}, nil},
		{[]string{"rack", "IS", "r1"}, []*api.Constraint{c(rack, "=", "r1")}, nil},
		{[]string{"rack", "LIKE", "r[12]"}, []*api.Constraint{c(rack, "regexp", "^(?:r[12])$")}, nil},
		{[]string{"hostname", "UNLIKE", "web1|web2"}, []*api.Constraint{c(host, "!=", "web1"), c(host, "!=", "web2")}, nil},
		{[]string{"rack", "UNLIKE", "r1"}, []*api.Constraint{c(rack, "!=", "r1")}, nil},
		{[]string{"rack", "GROUP_BY"}, nil, []*api.Spread{{Attribute: rack}}},
		{[]string{"rack", "GROUP_BY", "3"}, nil, []*api.Spread{{Attribute: rack}}},
	}
	for _, tt := range tests {
		p, err := translateConstraints([][]string{tt.in})
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(p.constraints, tt.want) || !reflect.DeepEqual(p.spreads, tt.spreads) {
			t.Errorf("%q: got %v %v, want %v %v", tt.in, show(p.constraints), p.spreads, show(tt.want), tt.spreads)
		}
	}
}

func show(cs []*api.Constraint) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.LTarget+" "+c.Operand+" "+c.RTarget)
	}
	return out
}

func TestTranslateConstraintsRefused(t *testing.T) {
	tests := []struct {
		in   []string
		want string // in the reason
	}{
		{[]string{"hostname", "CLUSTER"}, "no Nomad equivalent"},
		{[]string{"hostname", "CLUSTER", ""}, "no Nomad equivalent"},
		{[]string{"rack", "UNLIKE", "r[0-9]+"}, "no negated regexp"},
		{[]string{"rack", "UNLIKE", "(?i)r1"}, "no negated regexp"},
		{[]string{"rack", "LIKE", "(?<=a)b"}, "RE2"},
		{[]string{"rack", "MAX_PER", "0"}, "positive"},
		{[]string{"rack", "MAX_PER"}, "positive"},
		{[]string{"rack", "GROUP_BY", "x"}, "positive"},
		{[]string{"hostname", "UNIQUE", "x"}, "no value"},
		{[]string{"@region", "IS", "eu"}, "fault domain"},
		{[]string{"ra ck", "IS", "eu"}, "meta key"},
		{[]string{"rack", "NEAR", "x"}, `"NEAR"`},
		{[]string{"rack"}, "[field, operator]"},
	}
	for _, tt := range tests {
		_, err := translateConstraints([][]string{{"hostname", "UNIQUE"}, tt.in})
		var ce *ConstraintError
		if !errors.As(err, &ce) {
			t.Errorf("%q: error %v, want a *ConstraintError", tt.in, err)
			continue
		}
		if ce.Index != 1 || ce.Path() != "/constraints(1)" || !strings.Contains(ce.Reason, tt.want) {
			t.Errorf("%q: index %d path %s reason %q, want index 1 and %q", tt.in, ce.Index, ce.Path(), ce.Reason, tt.want)
		}
		if !strings.Contains(err.Error(), tt.in[0]) {
			t.Errorf("%q: error %q does not name the constraint", tt.in, err)
		}
	}
}
