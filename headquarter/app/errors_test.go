package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestErrorBodies checks the exact 400/422 body for each bad app in
// testdata/invalid against the .error.json beside it (go test -update
// rewrites them): the bodies headquarter's API returns verbatim.
func TestErrorBodies(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/invalid/*.json")
	inputs = slicesWithout(inputs, ".error.json")
	if len(inputs) == 0 {
		t.Fatal("no testdata")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(body, box1)
			if err == nil {
				t.Fatal("accepted")
			}
			checkGolden(t, strings.TrimSuffix(in, ".json")+".error.json", err)
		})
	}
}

func slicesWithout(paths []string, suffix string) []string {
	var out []string
	for _, p := range paths {
		if !strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
	}
	return out
}

// checkGolden compares v, as indented JSON, with the golden file, which
// -update rewrites; it returns the JSON.
func checkGolden(t *testing.T, golden string, v any) []byte {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n%s", golden, got)
	}
	return got
}
