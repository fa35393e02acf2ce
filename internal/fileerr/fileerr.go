// Package fileerr is the error of a file read by line and field (a rules
// file, a pipeline file): every problem placed by file, line, column and
// path, so editors and `garrison ... check` can jump to it.
package fileerr

import (
	"fmt"
	"strings"
)

// Error is one problem in a file, placed by line and column (1-based;
// 0 when unknown) and by path (e.g. "rules[2].up.cpu").
type Error struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Path   string `json:"path,omitempty"`
	Msg    string `json:"message"`
}

// Error formats as FILE:LINE:COL: PATH: MSG, leaving out what is unknown,
// so editors and `garrison rules check` can jump to it.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found, in file order. A parser returns it (as error)
// whenever it has at least one entry: a file is all valid or not used.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}
