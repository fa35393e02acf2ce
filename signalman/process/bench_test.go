package process

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/garrisonhq/garrison/signalman/task"
)

// BenchmarkLaunch50 launches 50 `sleep 30` through Driver.Launch and the same
// 50 directly with os/exec, in the same round, and reports both and their
// ratio; everything is killed between rounds (ns/op includes that teardown).
func BenchmarkLaunch50(b *testing.B) {
	const n = 50
	d, _ := newDriver(b)
	ctx := b.Context()
	var viaDriver, direct time.Duration
	rounds := 0
	for b.Loop() {
		rounds++
		ids := make([]string, n)
		begin := time.Now()
		for i := range ids {
			ids[i] = fmt.Sprintf("bench.%d-%d", rounds, i)
			if _, err := d.Launch(ctx, task.Spec{ID: ids[i], AppID: "/bench", Args: []string{"sleep", "30"}}); err != nil {
				b.Fatal(err)
			}
		}
		viaDriver += time.Since(begin)
		for _, id := range ids {
			if err := d.Kill(ctx, id, time.Second); err != nil {
				b.Fatal(err)
			}
			if err := d.Remove(ctx, id); err != nil {
				b.Fatal(err)
			}
		}

		cmds := make([]*exec.Cmd, n)
		begin = time.Now()
		for i := range cmds {
			cmds[i] = exec.Command("sleep", "30")
			if err := cmds[i].Start(); err != nil {
				b.Fatal(err)
			}
		}
		direct += time.Since(begin)
		for _, c := range cmds {
			if err := c.Process.Signal(syscall.SIGTERM); err != nil {
				b.Fatal(err)
			}
			if err := c.Wait(); err == nil {
				b.Fatal("sleep survived SIGTERM")
			}
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(rounds) }
	b.ReportMetric(ms(viaDriver), "driver-ms/50")
	b.ReportMetric(ms(direct), "exec-ms/50")
	b.ReportMetric(float64(viaDriver)/float64(direct), "driver/exec")
}
