package pipeline_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/ci/pipeline"
)

func TestParseGood(t *testing.T) {
	data, err := os.ReadFile("testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Parse(data, "good.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &pipeline.Pipeline{
		App: "/ktv/account",
		Build: pipeline.Step{Name: "build", Image: "garrison/build:busybox",
			Commands: []string{"go build -o out/account ./cmd/account", "echo 'built it'"},
			Env:      map[string]string{"CGO_ENABLED": "0"}, HostGo: true, Timeout: 20 * time.Minute},
		Image: pipeline.Image{Base: "scratch", Files: []pipeline.File{{From: "out/account", To: "/account"}},
			Entrypoint: []string{"/account"}, Cmd: []string{"--port", "8080"}},
		Tests: []pipeline.Step{{Name: "smoke", Image: "garrison/test:busybox",
			Commands: []string{`wget -qO- "$ALPHA_URL/ping"`}, Timeout: pipeline.DefaultTimeout}},
		Environments: []pipeline.Environment{{Name: "alpha"}, {Name: "qa", Auto: true}, {Name: "production", Approval: true}},
		Notify: []pipeline.Notify{{URL: "http://127.0.0.1:9000/hook", On: []string{"failed"}},
			{Mail: []string{`"Ops" <ops@example.com>`, "<dev@example.com>"}, On: []string{"passed", "failed"}},
			{Mail: []string{"<lead@example.com>"}, On: []string{"passed"}}},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if p.ImageName() != "ktv/account" {
		t.Errorf("image name %q", p.ImageName())
	}
}

func TestParseDefaults(t *testing.T) {
	p, err := pipeline.Parse([]byte("app: /a\nbuild: {image: b, commands: [x]}\nimage: {files: [{from: o, to: /o}]}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Image.Base != "scratch" || p.Build.Timeout != pipeline.DefaultTimeout || len(p.Environments) != 3 || p.Environments[2].Name != "production" {
		t.Errorf("defaults not applied: %+v", p)
	}
}

func TestParseErrorsNameLineAndField(t *testing.T) {
	cases := []struct {
		file string
		want []string
	}{
		{"bad-syntax.yml", []string{"bad-syntax.yml:3:1: did not find expected ',' or ']'"}},
		{"bad-fields.yml", []string{
			"bad-fields.yml:1:6: app: must be an absolute app id such as /ktv/account",
			"bad-fields.yml:3:3: build.commands: required",
			"bad-fields.yml:3:10: build.image: not an image reference",
			"bad-fields.yml:4:3: build.comands: unknown field (known: commands, env, hostGo, image, timeout)",
			"bad-fields.yml:5:12: build.timeout: must be above 0 and at most 2h0m0s",
			"bad-fields.yml:8:13: image.files[0].from: must be a path inside the workspace",
			"bad-fields.yml:9:11: image.files[0].to: must be an absolute path in the image, not /",
			"bad-fields.yml:11:11: tests[0].name: must be lower-case letters, digits and '-'",
			"bad-fields.yml:13:15: tests[0].commands: needs at least one command",
			"bad-fields.yml:14:5: tests[1].name: duplicate test name \"Smoke\"",
			"bad-fields.yml:14:11: tests[1].name: must be lower-case letters, digits and '-'",
			"bad-fields.yml:16:19: tests[1].commands[1]: must be a string, not a mapping",
			"bad-fields.yml:17:23: environments[1]: duplicate environment \"alpha\"",
			"bad-fields.yml:19:10: notify[0].url: must be an http:// or https:// URL",
			"bad-fields.yml:20:10: notify[0].on[0]: must be passed, failed or cancelled",
			"bad-fields.yml:21:28: notify[1].mail[1]: not a mail address (mail: missing '@' or angle-addr)",
			"bad-fields.yml:21:44: notify[1].mail[2]: not a mail address",
			"bad-fields.yml:22:5: notify[2]: url or mail, not both",
			"bad-fields.yml:24:5: notify[3]: needs url (a hook) or mail (recipients)",
			"bad-fields.yml:25:1: extra: unknown field (known: app, build, deploy, environments, image, notify, tests)",
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + c.file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = pipeline.Parse(data, c.file)
			errs, ok := err.(pipeline.Errors)
			if !ok {
				t.Fatalf("Parse = %v, want Errors", err)
			}
			if len(errs) != len(c.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(errs), len(c.want), err)
			}
			for i, w := range c.want {
				if i < len(errs) && !strings.HasPrefix(errs[i].Error(), w) {
					t.Errorf("error %d:\n got  %s\n want %s", i, errs[i], w)
				}
			}
		})
	}
}

func TestParseLimits(t *testing.T) {
	if _, err := pipeline.Parse(make([]byte, pipeline.MaxFileSize+1), "big"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized file: %v", err)
	}
	var b strings.Builder
	b.WriteString("app: /a\nimage: {files: [{from: o, to: /o}]}\nbuild:\n  image: b\n  commands:\n")
	for i := 0; i <= pipeline.MaxCommands; i++ {
		b.WriteString("    - x\n")
	}
	if _, err := pipeline.Parse([]byte(b.String()), "f"); err == nil || !strings.Contains(err.Error(), "build.commands: at most 100 items") {
		t.Errorf("too many commands: %v", err)
	}
	if _, err := pipeline.Parse(nil, "empty"); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

func TestScriptEchoesAndQuotes(t *testing.T) {
	s := pipeline.Step{Commands: []string{"echo 'a b'", "false"}}
	want := "set -e\nprintf '+ %s\\n' 'echo '\\''a b'\\'''\necho 'a b'\nprintf '+ %s\\n' 'false'\nfalse\n"
	if got := s.Script(); got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseDeploy(t *testing.T) {
	p, err := pipeline.Parse([]byte("app: /a\nbuild: {image: b, commands: [x]}\nimage: {files: [{from: o, to: /o}]}\n"+
		"deploy:\n  instances: 2\n  healthChecks: [{protocol: HTTP, path: /ping}]\n  container: {docker: {parameters: []}}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if p.Deploy["instances"] != 2 || p.Deploy["healthChecks"].([]any)[0].(map[string]any)["path"] != "/ping" {
		t.Errorf("deploy = %#v", p.Deploy)
	}
	_, err = pipeline.Parse([]byte("app: /a\nbuild: {image: b, commands: [x]}\nimage: {files: [{from: o, to: /o}]}\n"+
		"deploy:\n  id: /x\n  container: {docker: {image: y}}\n"), "f")
	if err == nil || !strings.Contains(err.Error(), "f:5:3: deploy.id: set by garrison") || !strings.Contains(err.Error(), "f:6:24: deploy.container.docker.image: set by garrison") {
		t.Errorf("err = %v", err)
	}
}

// TestTestStepWithoutImageIsWarm: a test step may leave out its image (it
// runs on a warm runner); the build step may not.
func TestTestStepWithoutImageIsWarm(t *testing.T) {
	p, err := pipeline.Parse([]byte("app: /a\nbuild: {image: b, commands: [x]}\nimage: {files: [{from: o, to: /o}]}\ntests: [{name: warm, commands: [y]}]\n"), "")
	if err != nil || len(p.Tests) != 1 || p.Tests[0].Image != "" || p.Tests[0].Name != "warm" {
		t.Fatalf("%+v %v", p, err)
	}
	_, err = pipeline.Parse([]byte("app: /a\nbuild: {commands: [x]}\nimage: {files: [{from: o, to: /o}]}\n"), "f")
	if err == nil || !strings.Contains(err.Error(), "f:2:8: build.image: required") {
		t.Errorf("build without image: %v", err)
	}
}
