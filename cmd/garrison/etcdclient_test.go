package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEtcdPasswordFile: --etcd-password-file stands for --etcd-password
// (its trailing newline cut), never beside it, and an empty or missing
// file fails naming the flag.
func TestEtcdPasswordFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	for _, tc := range []struct {
		name string
		s    etcdSettings
		want string // the password, or the error
	}{
		{"file", etcdSettings{user: "u", passwordFile: file("pw", "s3cret\n")}, "s3cret"},
		{"flag", etcdSettings{user: "u", password: "s3cret"}, "s3cret"},
		{"both", etcdSettings{user: "u", password: "a", passwordFile: file("pw2", "b")}, "--etcd-password and --etcd-password-file"},
		{"no user", etcdSettings{passwordFile: file("pw3", "b")}, "--etcd-user and --etcd-password"},
		{"empty file", etcdSettings{user: "u", passwordFile: file("empty", "\n")}, "is empty"},
		{"missing file", etcdSettings{user: "u", passwordFile: filepath.Join(dir, "nothing")}, "--etcd-password-file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.validate()
			if err == nil {
				_, err = tc.s.options([]string{"http://127.0.0.1:2379"})
			}
			switch {
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %v, want %q", err, tc.want)
			case err == nil && tc.s.password != tc.want:
				t.Errorf("password %q, want %q", tc.s.password, tc.want)
			}
		})
	}
}

// TestRunnerdSecretFiles: runnerd's --token-file and --password-file
// stand for --token and --password, never beside them, and a file that
// cannot be read fails naming its flag.
func TestRunnerdSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("t\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token", "x", "--token-file", tok}, "--token and --token-file: set one of them"},
		{[]string{"--user", "u", "--password-file", filepath.Join(dir, "nothing")}, "--password-file: open"},
	} {
		var stderr strings.Builder
		err := runRunnerd(t.Context(), append([]string{"--etcd", "http://127.0.0.1:1", "--app", "/ci/r", "--id", "r1"}, tc.args...), &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
