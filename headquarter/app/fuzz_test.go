package app

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bodies through the whole pipeline. It must
// never panic, and an app that decodes must survive marshal -> decode ->
// normalize unchanged. The seeds (testdata/normalize plus the edge cases
// below) run in every plain go test.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/normalize/*.json")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		``, `null`, `[]`, `{}`, `{"id":5}`, `{"id":"/a","ports":null,"dependencies":null}`,
		`{"instances":1e400}`, `{"instances":-0.0}`, `{"unreachableStrategy":{"inactiveAfterSeconds":9223372036854775807}}`,
		`{"env":{"":{"secret":""}},"labels":{"":""}}`, `{"constraints":[[],[""],["a","b","c","d"]]}`,
		`{"healthChecks":[{"portIndex":-1,"port":99999,"command":{}}]}`, `{"container":{"docker":{"network":"BRIDGE","portMappings":[{}]},"volumes":[{"persistent":{}}]}}`,
		`{"id":"../../..","dependencies":["/","..",""]}`, `{"version":"2015-09-25T15:13:48.343+02:00","versionInfo":{}}`,
		`{"id":"/a","cmd":"x y","networks":[],"portDefinitions":null,"ports":[1,1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := Decode(body)
		if err != nil {
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("Decode error %T, want *DecodeError", err)
			}
			if _, err := json.Marshal(err); err != nil {
				t.Fatal(err)
			}
			return
		}
		n := Normalize(a)
		_ = Validate(n, Environment{Hostname: "box1"})
		if p, err := AssignServicePorts(n, nil); err == nil {
			ToSpec(p, TaskID(p.ID), nil, "box1")
		}
		first, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(first)
		if err != nil {
			t.Fatalf("normalized app does not decode: %v\n%s", err, first)
		}
		second, _ := json.Marshal(Normalize(back))
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the app:\n%s\n%s", first, second)
		}
		if IsUpgrade(n, back) {
			t.Fatal("an app is an upgrade of its own round trip")
		}
		_, _ = Merge(n, body)
	})
}
