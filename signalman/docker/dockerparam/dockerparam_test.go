package dockerparam

import (
	"errors"
	"testing"
)

func TestAddMapsAllowedKeys(t *testing.T) {
	var o Options
	for _, p := range [][2]string{
		{"label", "team=ktv"}, {"--env", "A=1"}, {"cap-add", "NET_ADMIN"}, {"cap-drop", "MKNOD"},
		{"ulimit", "nofile=1024:2048"}, {"ulimit", "nproc=64"}, {"shm-size", "64m"}, {"memory-swap", "-1"},
		{"log-driver", "json-file"}, {"log-opt", "max-size=10m"}, {"tmpfs", "/run:size=1m"}, {"read-only", ""},
		{"init", "false"}, {"workdir", "/srv"}, {"stop-signal", "SIGINT"}, {"pids-limit", "100"}, {"add-host", "db:127.0.0.1"},
	} {
		if err := o.Add(p[0], p[1]); err != nil {
			t.Fatalf("Add(%q, %q): %v", p[0], p[1], err)
		}
	}
	if o.Labels["team"] != "ktv" || o.Env[0] != "A=1" || o.CapAdd[0] != "NET_ADMIN" || o.CapDrop[0] != "MKNOD" ||
		o.Ulimits[0] != (Ulimit{"nofile", 1024, 2048}) || o.Ulimits[1] != (Ulimit{"nproc", 64, 64}) || o.ShmSize != 64<<20 ||
		o.MemorySwap != -1 || o.LogDriver != "json-file" || o.LogOpts["max-size"] != "10m" || o.Tmpfs["/run"] != "size=1m" ||
		!o.ReadOnly || o.Init == nil || *o.Init || o.WorkDir != "/srv" || o.StopSignal != "SIGINT" || *o.PidsLimit != 100 ||
		o.ExtraHosts[0] != "db:127.0.0.1" {
		t.Errorf("options %+v", o)
	}
}

func TestAddRefusesWhatItCannotMap(t *testing.T) {
	for _, tc := range []struct{ key, value, field string }{
		{"hostname", "h", "key"}, // conflicts with host networking
		{"net", "bridge", "key"},
		{"volume", "/a:/b", "key"}, // container.volumes is the way
		{"ulimit", "nofile", "value"},
		{"shm-size", "lots", "value"},
		{"label", "garrison.app=/x", "value"},
		{"tmpfs", "run", "value"},
		{"read-only", "maybe", "value"},
	} {
		var o Options
		var pe *Error
		if err := o.Add(tc.key, tc.value); !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("Add(%q, %q) = %v, want an error on the %s", tc.key, tc.value, err, tc.field)
		}
	}
}
