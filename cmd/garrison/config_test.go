package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newTestFlags() (*flag.FlagSet, *upSettings) {
	var s upSettings
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	s.register(fs)
	return fs, &s
}

func TestSettingsPrecedenceFlagThenEnvThenFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "garrison.yaml")
	os.WriteFile(file, []byte("addr: 127.0.0.1:7001\ndata-dir: /from/file\nlog-level: warn\netcd:\n  - http://127.0.0.1:1\n  - http://127.0.0.1:2\n"), 0o600)
	t.Setenv("GARRISON_DATA_DIR", "/from/env")
	t.Setenv("GARRISON_LOG_LEVEL", "debug")
	fs, s := newTestFlags()
	if err := parseSettings(fs, []string{"--config", file, "--log-level", "error"}); err != nil {
		t.Fatal(err)
	}
	if s.addr != "127.0.0.1:7001" || s.dataDir != "/from/env" || s.logLevel != "error" {
		t.Fatalf("addr %q (want file), data-dir %q (want env), log-level %q (want flag)", s.addr, s.dataDir, s.logLevel)
	}
	if got := splitList(s.etcd.endpoints); len(got) != 2 || got[1] != "http://127.0.0.1:2" {
		t.Fatalf("etcd list from YAML sequence: %q", s.etcd)
	}
	if s.etcdListen != "http://127.0.0.1:2379" {
		t.Fatalf("default etcd-listen lost: %q", s.etcdListen)
	}
}

func TestSettingsConfigFromEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "garrison.yaml")
	os.WriteFile(file, []byte("addr: 127.0.0.1:7002\n"), 0o600)
	t.Setenv("GARRISON_CONFIG", file)
	fs, s := newTestFlags()
	if err := parseSettings(fs, nil); err != nil {
		t.Fatal(err)
	}
	if s.addr != "127.0.0.1:7002" {
		t.Fatalf("addr %q, want the value of the file named by GARRISON_CONFIG", s.addr)
	}
}

func TestSettingsFileErrorsNameLineAndKey(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "addr: x\nlisten: y\n", ":2: unknown setting \"listen\""},
		{"nested map", "addr:\n  host: x\n", ":2: addr: want a value or a list"},
		{"not a mapping", "- a\n- b\n", ":1: want a mapping"},
		{"bad yaml", "addr: [\n", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "bad.yaml")
			os.WriteFile(file, []byte(tc.body), 0o600)
			fs, _ := newTestFlags()
			err := parseSettings(fs, []string{"--config", file})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
				t.Fatalf("error %v, want it to name %s and contain %q", err, file, tc.want)
			}
		})
	}
}

func TestSettingsBadEnvironmentValue(t *testing.T) {
	var n int
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.IntVar(&n, "workers", 1, "")
	t.Setenv("GARRISON_WORKERS", "many")
	err := parseSettings(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "GARRISON_WORKERS") {
		t.Fatalf("error %v, want it to name GARRISON_WORKERS", err)
	}
}
