package app

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// BenchmarkParse measures Decode+Normalize+Validate of a typical app and
// reports it as a multiple of a bare json.Unmarshal of the same body into a
// generic value ("x-unmarshal"), timed for as many rounds right after the
// measured loop (b.Loop has stopped the benchmark timer by then).
func BenchmarkParse(b *testing.B) {
	body, err := os.ReadFile("testdata/normalize/docker.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(body, box1); err != nil {
			b.Fatal(err)
		}
	}
	parse := b.Elapsed()
	start := time.Now()
	for range b.N {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
	}
	if base := time.Since(start); base > 0 {
		b.ReportMetric(float64(parse)/float64(base), "x-unmarshal")
	}
}
