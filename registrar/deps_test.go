package registrar_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// heavy are module paths a service must not pull by importing the
// registrar: the etcd server (and its storage and raft), Docker, gin.
var heavy = []string{
	"go.etcd.io/etcd/server/",
	"go.etcd.io/bbolt",
	"go.etcd.io/raft/",
	"github.com/docker/",
	"github.com/moby/",
	"github.com/gin-gonic/",
	"github.com/garrisonhq/garrison/internal/",
}

// TestModuleStaysSmall lists what every package of this module imports,
// tests excluded (a service's build never sees them), and fails on any
// heavy dependency.
func TestModuleStaysSmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./...: %v\n%s", err, out)
	}
	pkgs := strings.Fields(string(out))
	if len(pkgs) < 50 || !slices.Contains(pkgs, "go.etcd.io/etcd/client/v3") {
		t.Fatalf("go list -deps ./... gave %d packages, without the etcd client: not the module's graph", len(pkgs))
	}
	for _, p := range pkgs {
		for _, h := range heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("the registrar module depends on %s", p)
			}
		}
	}
}
