package app

import (
	"fmt"
	"slices"
	"strings"
)

// Selector is a parsed GET /v2/apps?label= query: requirements that must
// all hold (comma means AND).
type Selector []Requirement

// Requirement is one term of a selector. Every kind needs the label to
// exist, as Marathon's LabelSelector does, "!=" and "notin" included.
type Requirement struct {
	Key    string
	Op     string // "exists", "==", "!=", "in", "notin"
	Values []string
}

// ParseSelector reads Marathon's label selector grammar:
//
//	selector:    requirement {"," requirement}
//	requirement: term | term ("=="|"!=") term | term ("in"|"notin") "(" term {"," term} ")"
//	term:        letters and digits; any other character escaped with "\"
//
// e.g. `env==prod, tier in (web, api), canary`. Spaces between tokens are
// ignored. An empty query selects everything.
func ParseSelector(s string) (Selector, error) {
	p := &selParser{s: s}
	var sel Selector
	p.space()
	if p.done() {
		return sel, nil
	}
	for {
		r, err := p.requirement()
		if err != nil {
			return nil, fmt.Errorf("Can not parse label selector %s. Reason: %w", s, err)
		}
		sel = append(sel, r)
		p.space()
		if p.done() {
			return sel, nil
		}
		if !p.eat(",") {
			return nil, fmt.Errorf("Can not parse label selector %s. Reason: expected ',' at offset %d", s, p.i)
		}
	}
}

// Match says whether labels satisfy every requirement.
func (s Selector) Match(labels map[string]string) bool {
	for _, r := range s {
		if !r.Match(labels) {
			return false
		}
	}
	return true
}

// Match says whether labels satisfy the requirement.
func (r Requirement) Match(labels map[string]string) bool {
	v, ok := labels[r.Key]
	if !ok {
		return false
	}
	switch r.Op {
	case "==":
		return v == r.Values[0]
	case "!=":
		return v != r.Values[0]
	case "in":
		return slices.Contains(r.Values, v)
	case "notin":
		return !slices.Contains(r.Values, v)
	}
	return true
}

type selParser struct {
	s string
	i int
}

func (p *selParser) done() bool { return p.i >= len(p.s) }

func (p *selParser) space() {
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// eat consumes tok after optional spaces.
func (p *selParser) eat(tok string) bool {
	p.space()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func (p *selParser) term() (string, error) {
	p.space()
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		switch {
		case c == '\\' && p.i+1 < len(p.s):
			b.WriteByte(p.s[p.i+1])
			p.i += 2
		case isAlnum(c):
			b.WriteByte(c)
			p.i++
		default:
			goto end
		}
	}
end:
	if b.Len() == 0 {
		return "", fmt.Errorf("expected a term at offset %d", p.i)
	}
	return b.String(), nil
}

// setOp consumes "in" or "notin" when a "(" follows, so a key named "in"
// still parses as an existence requirement.
func (p *selParser) setOp() string {
	save := p.i
	for _, op := range []string{"notin", "in"} {
		p.i = save
		if p.eat(op) && p.eat("(") {
			return op
		}
	}
	p.i = save
	return ""
}

func (p *selParser) requirement() (Requirement, error) {
	key, err := p.term()
	if err != nil {
		return Requirement{}, err
	}
	for _, op := range []string{"==", "!="} {
		if p.eat(op) {
			v, err := p.term()
			if err != nil {
				return Requirement{}, err
			}
			return Requirement{Key: key, Op: op, Values: []string{v}}, nil
		}
	}
	if op := p.setOp(); op != "" {
		r := Requirement{Key: key, Op: op, Values: []string{}}
		if p.eat(")") {
			return r, nil
		}
		for {
			v, err := p.term()
			if err != nil {
				return Requirement{}, err
			}
			r.Values = append(r.Values, v)
			if p.eat(")") {
				return r, nil
			}
			if !p.eat(",") {
				return Requirement{}, fmt.Errorf("expected ',' or ')' at offset %d", p.i)
			}
		}
	}
	return Requirement{Key: key, Op: "exists"}, nil
}
