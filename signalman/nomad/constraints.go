package nomad

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// ConstraintError says why a Marathon constraint has no Nomad form. The API
// answers it with a 422 whose path is Path().
type ConstraintError struct {
	Index      int
	Constraint []string
	Reason     string
}

func (e *ConstraintError) Error() string {
	return fmt.Sprintf("constraint %d %q: %s", e.Index, e.Constraint, e.Reason)
}

// Path is the constraint's path in Marathon's 422 body.
func (e *ConstraintError) Path() string { return fmt.Sprintf("/constraints(%d)", e.Index) }

// FieldError says why an app's field has no Nomad form. The API answers it
// with a 422 whose path is Path().
type FieldError struct {
	AppID string
	// Field is the field's path in Marathon's 422 body, e.g. /fetch.
	Field, Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("app %s: %s", e.AppID, e.Reason) }

// Path is the field's path in Marathon's 422 body.
func (e *FieldError) Path() string { return e.Field }

// placement is what Marathon's constraints become on one task group.
type placement struct {
	constraints []*api.Constraint
	spreads     []*api.Spread
}

// metaKey is what a Mesos attribute becomes: a key of the Nomad client's
// meta block, which ${meta.<key>} interpolation can name.
var metaKey = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// translateConstraints maps Marathon constraints onto Nomad's:
//
//	hostname UNIQUE      distinct_hosts
//	attr UNIQUE          distinct_property ${meta.attr} 1
//	F MAX_PER n          distinct_property F n
//	F CLUSTER v / IS v   F = v
//	F LIKE re            F regexp ^(?:re)$ (Nomad's match is unanchored)
//	F UNLIKE a|b|...     F != a, F != b, ... (Nomad has no negated regexp,
//	                     so only a list of literal alternatives maps)
//	F GROUP_BY [n]       spread over F (a preference, not a hard limit)
//
// F is ${attr.unique.hostname} for "hostname" and ${meta.F} otherwise (Mesos
// agent attributes are Nomad client meta). Anything else is a
// *ConstraintError naming the constraint.
func translateConstraints(cs [][]string) (placement, error) {
	var p placement
	for i, c := range cs {
		fail := func(format string, args ...any) error {
			return &ConstraintError{Index: i, Constraint: c, Reason: fmt.Sprintf(format, args...)}
		}
		if len(c) < 2 || len(c) > 3 {
			return p, fail("a constraint is [field, operator] or [field, operator, value]")
		}
		field, op := c[0], strings.ToUpper(c[1])
		value, hasValue := "", len(c) == 3
		if hasValue {
			value = c[2]
		}
		target, err := fieldTarget(field)
		if err != nil {
			return p, fail("%v", err)
		}
		add := func(operand, rtarget string) {
			p.constraints = append(p.constraints, &api.Constraint{LTarget: target, Operand: operand, RTarget: rtarget})
		}
		switch op {
		case "UNIQUE":
			if hasValue {
				return p, fail("UNIQUE takes no value")
			}
			if field == "hostname" || field == "@hostname" {
				p.constraints = append(p.constraints, &api.Constraint{Operand: api.ConstraintDistinctHosts, RTarget: "true"})
			} else {
				add(api.ConstraintDistinctProperty, "1")
			}
		case "MAX_PER":
			n, err := strconv.Atoi(value)
			if !hasValue || err != nil || n < 1 {
				return p, fail("MAX_PER needs a positive whole number as value")
			}
			add(api.ConstraintDistinctProperty, strconv.Itoa(n))
		case "CLUSTER", "IS":
			if !hasValue || value == "" {
				return p, fail("%s without a value (run where the first instance ran) has no Nomad equivalent", op)
			}
			add("=", value)
		case "LIKE":
			if !hasValue {
				return p, fail("LIKE needs a regular expression as value")
			}
			if _, err := regexp.Compile(value); err != nil {
				return p, fail("LIKE value is not a regular expression Nomad (RE2) accepts: %v", err)
			}
			add(api.ConstraintRegex, "^(?:"+value+")$")
		case "UNLIKE":
			if !hasValue {
				return p, fail("UNLIKE needs a regular expression as value")
			}
			lits, ok := literalAlternatives(value)
			if !ok {
				return p, fail("Nomad has no negated regexp: UNLIKE maps only to literal alternatives such as \"a|b\"")
			}
			for _, l := range lits {
				add("!=", l)
			}
		case "GROUP_BY":
			if hasValue {
				if n, err := strconv.Atoi(value); err != nil || n < 1 {
					return p, fail("GROUP_BY value must be a positive whole number")
				}
			}
			p.spreads = append(p.spreads, &api.Spread{Attribute: target})
		default:
			return p, fail("operator %q has no Nomad equivalent (UNIQUE, CLUSTER, IS, LIKE, UNLIKE, MAX_PER, GROUP_BY map)", c[1])
		}
	}
	return p, nil
}

// fieldTarget is the Nomad interpolation a Marathon constraint field reads.
func fieldTarget(field string) (string, error) {
	switch {
	case field == "hostname" || field == "@hostname":
		return "${attr.unique.hostname}", nil
	case strings.HasPrefix(field, "@"):
		return "", fmt.Errorf("field %q (a Mesos fault domain) has no Nomad equivalent", field)
	case !metaKey.MatchString(field):
		return "", fmt.Errorf("field %q is not a Nomad client meta key ([A-Za-z0-9_.-])", field)
	}
	return "${meta." + field + "}", nil
}

// literalAlternatives reports the literal strings a regexp made only of
// literals joined by "|" matches in full, e.g. "a|b" -> [a b]. A piece that
// is not a plain literal (escapes of "|" and groups included) refuses.
func literalAlternatives(re string) ([]string, bool) {
	var out []string
	for _, piece := range strings.Split(re, "|") {
		if piece == "" {
			out = append(out, "")
			continue
		}
		parsed, err := syntax.Parse(piece, syntax.Perl)
		if err != nil || parsed.Op != syntax.OpLiteral || parsed.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		out = append(out, string(parsed.Rune))
	}
	return out, true
}
