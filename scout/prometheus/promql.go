package prometheus

import (
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// promql is Prometheus' own parser with its defaults (no experimental
// functions): what a stock server accepts.
var promql = parser.NewParser(parser.Options{})

// CheckSyntax renders query as Read would for app over window and parses
// it with Prometheus' PromQL parser, offline: a query that does not parse
// is refused when the rules are checked or put, not every evaluation at
// run time. The error is the template's or the parser's (with the
// position in the rendered query). A query that parses can still be
// refused by an older server (a function it lacks): `garrison rules check
// --prometheus URL` asks the server itself.
func CheckSyntax(query, app string, window time.Duration) error {
	t, err := parse("query", query)
	if err != nil {
		return err
	}
	text, err := Render(t, Data{Window: Window(window), App: app})
	if err != nil {
		return err
	}
	if _, err := promql.ParseExpr(text); err != nil {
		return &QueryError{Query: text, Msg: err.Error()}
	}
	return nil
}
