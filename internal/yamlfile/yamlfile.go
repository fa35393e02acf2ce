// Package yamlfile is the common ground of garrison's YAML file formats (the
// autoscaling rules, the pipeline file): a decoder that walks yaml.v3's
// node tree and collects every problem with its line, column and field
// path, rather than stopping at the first, so `garrison ... check` and the
// API can show them all at once.
package yamlfile

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/garrisonhq/garrison/internal/fileerr"
)

// yaml.v3 reports syntax errors as text; the line is only there.
var syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// SyntaxError places a yaml.v3 syntax error at its line.
func SyntaxError(err error, file string) fileerr.Error {
	e := fileerr.Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := syntaxLineRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Column, e.Msg = 1, m[2]
	}
	return e
}

// Decoder collects the problems of one file.
type Decoder struct {
	File string
	Errs fileerr.Errors
}

// Errf records a problem at n (nil: the file as a whole) and path.
func (d *Decoder) Errf(n *yaml.Node, path, format string, args ...any) {
	e := fileerr.Error{File: d.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.Errs = append(d.Errs, e)
}

// Err is every problem recorded, in file order, or nil. Checks run field
// by field and then across fields: sorting puts them back in the order a
// reader meets them.
func (d *Decoder) Err() error {
	if len(d.Errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.Errs, func(a, b fileerr.Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return d.Errs
}

// Mapping calls f for each key of a mapping node in file order, aliases
// resolved. Keys that are not strings and duplicate keys are errors
// (yaml.v3 rejects duplicates only when decoding into a map). It returns
// false when n is not a mapping.
func (d *Decoder) Mapping(n *yaml.Node, path string, f func(key string, k, v *yaml.Node)) bool {
	n = Resolve(n)
	if n.Kind != yaml.MappingNode {
		d.Errf(n, path, "must be a mapping, not %s", Describe(n))
		return false
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), Resolve(n.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			d.Errf(k, path, "keys must be strings")
		case seen[k.Value]:
			d.Errf(k, Join(path, k.Value), "duplicate key")
		default:
			seen[k.Value] = true
			f(k.Value, k, v)
		}
	}
	return true
}

// Resolve follows aliases to the node they name.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// IsNull says whether n is absent or an explicit null.
func IsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Describe names what a node is, for "must be X, not Y" messages.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// Join appends a key to a field path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
