// Package testbin builds the programs a test runs as real processes (the
// garrison binary, the example service, a task server) once per test
// binary, from TestMain.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles goPackage into a fresh temporary directory and returns the
// binary's path and a function that removes it. Static builds
// (CGO_ENABLED=0) run FROM scratch in a container too.
func Build(goPackage string, static bool) (string, func(), error) {
	dir, err := os.MkdirTemp("", "garrison-testbin-")
	if err != nil {
		return "", nil, fmt.Errorf("build %s: %w", goPackage, err)
	}
	bin := filepath.Join(dir, filepath.Base(goPackage))
	cmd := exec.Command("go", "build", "-o", bin, goPackage)
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build %s: %w\n%s", goPackage, err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Static compiles goPackage statically (CGO_ENABLED=0) and returns the
// binary itself: for a test that puts it somewhere else, such as the
// repository a pipeline builds an image FROM scratch from.
func Static(t testing.TB, goPackage string) []byte {
	t.Helper()
	path, cleanup, err := Build(goPackage, true)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	bin, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("build %s: %v", goPackage, err)
	}
	return bin
}

// Main is a TestMain body: it builds goPackage into *bin, runs the tests,
// removes the binary and exits with the tests' code.
func Main(m *testing.M, goPackage string, static bool, bin *string) {
	path, cleanup, err := Build(goPackage, static)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}
