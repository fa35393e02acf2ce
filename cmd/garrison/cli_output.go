package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
)

var cellBreaks = strings.NewReplacer("\t", " ", "\n", " ")

// table writes aligned columns under UPPERCASE headers.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(headers...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(t.tw, "\t")
		}
		// A tab or line break inside a cell would break the columns.
		if strings.ContainsAny(c, "\t\n") {
			c = cellBreaks.Replace(c)
		}
		io.WriteString(t.tw, c)
	}
	io.WriteString(t.tw, "\n")
}

func (t *table) flush() error { return t.tw.Flush() }

// printData writes raw JSON values for scripts: one value (one=true) or a
// list, as indented JSON or YAML.
func (x *cli) printData(one bool, items ...json.RawMessage) error {
	var doc []byte
	if one && len(items) == 1 {
		doc = items[0]
	} else {
		size := 2
		for _, it := range items {
			size += len(it) + 1
		}
		doc = make([]byte, 0, size)
		doc = append(doc, '[')
		for i, it := range items {
			if i > 0 {
				doc = append(doc, ',')
			}
			doc = append(doc, it...)
		}
		doc = append(doc, ']')
	}
	return x.printDoc(doc)
}

// printValue marshals v and prints it as -o asks (json or yaml).
func (x *cli) printValue(v any) error {
	doc, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	return x.printDoc(doc)
}

func (x *cli) printDoc(doc []byte) error {
	if x.output == "yaml" {
		out, err := jsonToYAML(doc)
		if err != nil {
			return err
		}
		_, err = x.stdout.Write(out)
		return err
	}
	var buf bytes.Buffer
	buf.Grow(len(doc) * 2)
	if err := json.Indent(&buf, doc, "", "  "); err != nil {
		return fmt.Errorf("the API sent invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := x.stdout.Write(buf.Bytes())
	return err
}

// jsonToYAML re-encodes JSON as block-style YAML, keeping the key order.
func jsonToYAML(doc []byte) ([]byte, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		return nil, fmt.Errorf("convert to YAML: %w", err)
	}
	var plain func(*yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			plain(c)
		}
	}
	plain(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("convert to YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("convert to YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// structured reports whether -o asks for JSON or YAML.
func (x *cli) structured() bool { return x.output != "table" && x.output != "wide" }

// wide reports whether -o wide asks tables for more columns.
func (x *cli) wide() bool { return x.output == "wide" }

// age is how long ago an API timestamp was, kubectl-style ("45s", "3m",
// "5h", "2d"); "-" when there is none.
func age(ts string, now time.Time) string {
	if ts == "" {
		return "-"
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return ts
	}
	return formatAge(now.Sub(t))
}

func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// maxInputBytes bounds what -f reads: far above what the API takes (its
// 413 says so), low enough that a wrong file cannot exhaust memory.
const maxInputBytes = 16 << 20

// readInput reads FILE, or stdin for "-", up to maxInputBytes; name is
// what errors call it.
func (x *cli) readInput(file string) (data []byte, name string, err error) {
	if file == "" {
		return nil, "", usageError{"-f FILE is required (- reads stdin)"}
	}
	var r io.Reader = x.stdin
	name = "stdin"
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, file, fmt.Errorf("read %s: %w", file, err)
		}
		defer f.Close()
		r, name = f, file
	}
	data, err = io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, name, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxInputBytes {
		return nil, name, fmt.Errorf("%s is larger than %d MiB", name, maxInputBytes>>20)
	}
	return data, name, nil
}

// readDefinition reads an app definition and returns JSON: a YAML file is
// converted, with its line in any syntax error.
func (x *cli) readDefinition(file string) ([]byte, error) {
	data, name, err := x.readInput(file)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s is empty", name)
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		// JSON goes as is: the API names the fields it refuses.
		return trimmed, nil
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// printList prints n items as the API sent them (-o json or yaml); raw
// gives the i-th item's JSON.
func (x *cli) printList(n int, raw func(i int) json.RawMessage) error {
	items := make([]json.RawMessage, n)
	for i := range items {
		items[i] = raw(i)
	}
	return x.printData(false, items...)
}
