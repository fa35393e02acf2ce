package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerevents "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/internal/dockertest"
	"github.com/garrisonhq/garrison/internal/etcdtest"
	"github.com/garrisonhq/garrison/internal/poll"
	"github.com/garrisonhq/garrison/internal/testport"
	"github.com/garrisonhq/garrison/signalman/docker"
)

// TestHQNeedsAnExternalEtcd: garrison hq embeds no etcd, and the other
// replicas must be able to reach its API.
func TestHQNeedsAnExternalEtcd(t *testing.T) {
	addr := freeAddrs(t, 1)[0]
	_, port, _ := strings.Cut(addr, ":")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--etcd is required"},
		{[]string{"--etcd-listen", "http://127.0.0.1:2379"}, "flag provided but not defined: -etcd-listen"},
		{[]string{"--etcd", "http://127.0.0.1:1", "--addr", "0.0.0.0:" + port}, "set --advertise-addr"},
	} {
		p := startGarrison(t, append([]string{"hq", "--addr", addr, "--data-dir", t.TempDir()}, tc.args...)...)
		err := p.WaitExit(t, 30*time.Second)
		if exitErr, ok := err.(*exec.ExitError); !ok || exitErr.ExitCode() != 2 || !strings.Contains(p.Stderr(), tc.want) {
			t.Fatalf("garrison hq %v: exit %v, want code 2 saying %q; stderr:\n%s", tc.args, err, tc.want, p.Stderr())
		}
	}
}

// haTTL is the replicas' --leader-ttl: short, so the test is too.
const haTTL = 3 * time.Second

// hqReplica is one garrison hq process, restarted in place (same address
// and data directory) whenever it exits, as a supervisor would.
type hqReplica struct {
	addr, dataDir string
	args          []string
	mu            sync.Mutex
	proc          *garrisonProc
	starts        int
}

func (r *hqReplica) start(t *testing.T) {
	p := startGarrison(t, append([]string{"hq", "--addr", r.addr, "--data-dir", r.dataDir}, r.args...)...)
	r.mu.Lock()
	r.proc = p
	r.starts++
	r.mu.Unlock()
}

// supervise restarts the replica each time it exits, until stop is set.
func (r *hqReplica) supervise(t *testing.T, stop *atomic.Bool) {
	for {
		<-r.current().Exited()
		if stop.Load() {
			return
		}
		r.start(t)
	}
}

func (r *hqReplica) current() *garrisonProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

// haCluster is the replicas and what the test knows of them.
type haCluster struct {
	t        *testing.T
	replicas []*hqReplica
	next     atomic.Uint64 // round robin over replicas for writes
}

// leader asks replica r who leads; "" when it cannot say.
func (c *haCluster) leaderSeenBy(r *hqReplica) string {
	ans, err := ask(c.t, "GET", "http://"+r.addr+"/v2/leader", "")
	if err != nil || ans.status != 200 {
		return ""
	}
	l, _ := ans.body["leader"].(string)
	return l
}

// probeClient asks a replica whether it leads: the leader answers that
// itself at once, while a follower's answer may wait on a stopped leader.
var probeClient = &http.Client{Timeout: time.Second}

func (c *haCluster) leadsItself(r *hqReplica) bool {
	resp, err := probeClient.Get("http://" + r.addr + "/v2/apps")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200 && resp.Header.Get("X-Marathon-Via") == "" && resp.Header.Get("X-Marathon-Leader") == "http://"+r.addr
}

// serving returns the replica that leads and answers API requests itself
// (no X-Marathon-Via), among those not excluded.
func (c *haCluster) serving(not *hqReplica) *hqReplica {
	for _, r := range c.replicas {
		if r != not && c.leadsItself(r) {
			return r
		}
	}
	return nil
}

// leading waits for a replica that leads and answers for itself, and
// returns it with the process that serves its address: the one to kill or
// pause. A supervisor may have restarted the replica since the test last
// looked, so the process is matched to the address by the listening
// socket it holds, and the replica must still lead after the match.
func (c *haCluster) leading(what string) (*hqReplica, *garrisonProc) {
	var r *hqReplica
	var p *garrisonProc
	poll.Until(c.t, 2*time.Minute, what, func() (bool, string) {
		if r = c.serving(nil); r == nil {
			return false, "no replica leads"
		}
		p = r.current()
		if ok, err := p.Listens(r.addr); !ok {
			return false, fmt.Sprintf("%s is not served by pid %d, the replica's process (%v)", r.addr, p.Cmd.Process.Pid, err)
		}
		return c.leadsItself(r), r.addr + " no longer leads"
	})
	c.t.Logf("%s: pid %d at %s (%s)", what, p.Cmd.Process.Pid, r.addr, lastTerm(p))
	return r, p
}

// lastTerm is the election key and revision a process last won with, from
// its log.
func lastTerm(p *garrisonProc) string {
	lines := strings.Split(p.Stderr(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "msg=leading") {
			_, term, _ := strings.Cut(lines[i], "key=")
			return "key=" + term
		}
	}
	return "no term in its log"
}

func (c *haCluster) byAddr(addr string) *hqReplica {
	for _, r := range c.replicas {
		if r.addr == addr {
			return r
		}
	}
	return nil
}

// outcome of one API write as the client saw it.
type outcome int

const (
	applied    outcome = iota
	notApplied         // provably not: never reached a leader, or refused
	unknown            // the answer was lost: read the state to know
)

var writeClient = &http.Client{Timeout: 20 * time.Second}

// write sends one write to addr, or to the next replica in turn.
func (c *haCluster) write(addr, method, path, body string) (outcome, string) {
	if addr == "" {
		addr = c.replicas[c.next.Add(1)%uint64(len(c.replicas))].addr
	}
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := writeClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return notApplied, err.Error()
		}
		return unknown, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	msg := fmt.Sprintf("%s %s to %s: %d %s (X-Marathon-Via %q)", method, path, addr, resp.StatusCode, bytes.TrimSpace(b), resp.Header.Get("X-Marathon-Via"))
	switch {
	case resp.StatusCode < 300:
		return applied, msg
	case resp.StatusCode == http.StatusConflict,
		// The proxy found no leader, or the leader's refused: never sent.
		strings.Contains(string(b), "Could not determine the current leader"), strings.Contains(string(b), "Connection to leader refused"),
		// A former leader's write, refused by its fence.
		strings.Contains(string(b), "not the leader"):
		return notApplied, msg
	}
	return unknown, msg
}

// haApp is one app's acknowledged history, and what a single scheduler
// acting once per change must have done for it.
type haApp struct {
	id        string
	instances int
	gen       int
	created   bool
	launches  int // containers a single leader starts for this history
	kills     int // and stops
	unknowns  int // writes whose answer was lost, resolved by reading
	answers   []string
}

type haOp struct {
	kind string // create, scale, update
	n    int
}

func (a *haApp) apply(op haOp) {
	switch op.kind {
	case "create":
		a.created, a.instances, a.launches = true, op.n, op.n
	case "scale":
		a.launches += max(0, op.n-a.instances)
		a.kills += max(0, a.instances-op.n)
		a.instances = op.n
	case "update": // a new configuration replaces every task
		a.gen++
		a.launches += a.instances
		a.kills += a.instances
	}
}

// appState is an app as the API shows it, for settling and resolving.
type appState struct {
	exists              bool
	instances, gen      int
	running, staged     int
	deployments, tasks  int
	taskIDs             []string
	allRunning, current bool
}

func (c *haCluster) readApp(id string) (appState, error) {
	for _, r := range c.replicas {
		ans, err := ask(c.t, "GET", "http://"+r.addr+"/v2/apps"+id+"?embed=apps.tasks", "")
		if err != nil || (ans.status != 200 && ans.status != 404) {
			continue
		}
		if ans.status == 404 {
			return appState{}, nil
		}
		var body struct {
			App struct {
				Instances    int               `json:"instances"`
				Env          map[string]string `json:"env"`
				TasksRunning int               `json:"tasksRunning"`
				TasksStaged  int               `json:"tasksStaged"`
				Deployments  []any             `json:"deployments"`
				Tasks        []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"tasks"`
			} `json:"app"`
		}
		raw, _ := json.Marshal(ans.body)
		if err := json.Unmarshal(raw, &body); err != nil {
			return appState{}, err
		}
		a := body.App
		s := appState{exists: true, instances: a.Instances, running: a.TasksRunning, staged: a.TasksStaged,
			deployments: len(a.Deployments), tasks: len(a.Tasks), allRunning: true}
		fmt.Sscanf(a.Env["GEN"], "%d", &s.gen)
		for _, tk := range a.Tasks {
			s.taskIDs = append(s.taskIDs, tk.ID)
			s.allRunning = s.allRunning && tk.State == "TASK_RUNNING"
		}
		return s, nil
	}
	return appState{}, errors.New("no replica answers")
}

// settle waits until the app's last change is carried out: no deployment,
// as many running tasks as instances, none other. With mayBeAbsent (a
// create whose answer was lost), an absent app is settled too.
func (c *haCluster) settle(a *haApp, mayBeAbsent bool) {
	poll.Until(c.t, 3*time.Minute, a.id+" settles", func() (bool, string) {
		s, err := c.readApp(a.id)
		if err != nil {
			return false, err.Error()
		}
		if !s.exists {
			return mayBeAbsent, "absent"
		}
		return s.deployments == 0 && s.tasks == s.instances && s.running == s.instances && s.allRunning, fmt.Sprintf("%+v", s)
	})
}

func TestHQKeepsWritesAndActsOnceThroughLeaderLoss(t *testing.T) {
	dcli := dockertest.Client(t)
	image := "garrison-test/testserver:cmd"
	dockertest.BuildGoImage(t, dcli, image, dockertest.TestServerPackage)
	etcd := etcdtest.NewCluster(t, 3)
	cli := etcd.Client(t)
	// The garrison's namespace, set before any replica makes one: the
	// Docker events of its containers are the test's count of actions.
	namespace := dockertest.UniqueName("hqha")
	if _, err := cli.Put(t.Context(), "/garrison/cluster-id", namespace); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNamespace(dcli, namespace) })
	counts := countDockerActions(t, dcli, namespace)

	ports := testport.Consecutive(t, 120)
	addrs := freeAddrs(t, 3)
	c := &haCluster{t: t}
	for i, a := range addrs {
		// Each replica talks to a different etcd member first.
		eps := append(slices.Clone(etcd.Endpoints[i:]), etcd.Endpoints[:i]...)
		r := &hqReplica{addr: a, dataDir: t.TempDir(), args: []string{"--etcd", strings.Join(eps, ","),
			"--leader-ttl", haTTL.String(), "--task-ports", fmt.Sprintf("%d-%d", ports, ports+119), "--drain-delay", "100ms"}}
		r.start(t)
		c.replicas = append(c.replicas, r)
	}
	// Deferred, so set before any cleanup: the supervisors do not restart
	// what the test's cleanup kills.
	var stopSupervising atomic.Bool
	defer stopSupervising.Store(true)
	for _, r := range c.replicas {
		go r.supervise(t, &stopSupervising)
	}
	poll.Until(t, 2*time.Minute, "a leader serves", func() (bool, string) { return c.serving(nil) != nil, "" })

	// The burst: apps written to concurrently, each write through the next
	// replica, each app's writes in order, each once the previous one is
	// carried out (so that what a single leader must do is exact). The
	// last writes of each app wait for the chaos to be over, so that both
	// the kill and the pause happen during the burst.
	plan := []haOp{{"create", 2}, {"scale", 3}, {"update", 0}, {"scale", 1}, {"update", 0}, {"scale", 3}, {"update", 0}, {"scale", 2}}
	const gateAt = 6
	var acks atomic.Int64
	calm := make(chan struct{}) // closed when the chaos is over
	var calmMu sync.Mutex
	quiet := true // no process killed or paused right now
	waitQuiet := func() {
		poll.Until(t, 3*time.Minute, "the chaos pauses", func() (bool, string) {
			calmMu.Lock()
			defer calmMu.Unlock()
			return quiet, ""
		})
	}
	setQuiet := func(q bool) { calmMu.Lock(); quiet = q; calmMu.Unlock() }

	var abort atomic.Bool
	// Apps a client keeps writing to the stopped leader, as one that still
	// takes it for the leader would; created first, then left alone.
	stale := []*haApp{{id: "/ha/stale0"}, {id: "/ha/stale1"}}
	for _, a := range stale {
		if !c.do(a, haOp{"create", 1}, "", image, &abort, waitQuiet) {
			t.FailNow()
		}
	}

	apps := make([]*haApp, 4)
	var wg sync.WaitGroup
	closeCalm := sync.OnceFunc(func() { close(calm) })
	defer func() {
		// On a failure below, the writers stop at their next write.
		abort.Store(true)
		closeCalm()
		wg.Wait()
	}()
	for i := range apps {
		a := &haApp{id: fmt.Sprintf("/ha/app%d", i)}
		apps[i] = a
		wg.Go(func() {
			for k, op := range plan {
				if k == gateAt {
					<-calm
				}
				if !c.do(a, op, "", image, &abort, waitQuiet) {
					return
				}
				acks.Add(1)
			}
		})
	}

	// The chaos: kill -9 of the leader, then SIGSTOP of the next one for
	// longer than the TTL, each while writes go on.
	poll.Until(t, 5*time.Minute, "writes acknowledged before the kill", func() (bool, string) { return acks.Load() >= 5, "" })
	victim, victimProc := c.leading("the leader to kill")
	setQuiet(false)
	killed := time.Now()
	if err := victimProc.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 pid %d: %v", victimProc.Cmd.Process.Pid, err)
	}
	victimProc.WaitExit(t, 30*time.Second)
	var next *hqReplica
	poll.Until(t, 2*time.Minute, "another replica leads after the kill", func() (bool, string) {
		next = c.serving(victim)
		return next != nil, ""
	})
	t.Logf("takeover after kill -9 of the leader: %s (leader TTL %s)", time.Since(killed).Round(time.Millisecond), haTTL)
	setQuiet(true) // its supervisor restarted it: a follower now

	poll.Until(t, 5*time.Minute, "writes acknowledged before the pause", func() (bool, string) { return acks.Load() >= 14, "" })
	paused, pausedProc := c.leading("the leader to pause")
	setQuiet(false)
	// Stopped for sure before the stale writes are sent: kill(2) returns
	// before the process stops, and a write it still handled meanwhile,
	// as the leader it then was, is rightly acknowledged (seen in CI).
	pausedProc.Pause(t, time.Minute)
	stopped := time.Now()
	if ok, err := pausedProc.Listens(paused.addr); !ok {
		t.Fatalf("the stopped pid %d does not serve %s: %v", pausedProc.Cmd.Process.Pid, paused.addr, err)
	}
	var staleWG sync.WaitGroup
	staleAnswer := make([]int, len(stale)) // index of each stale write's answer
	for i, a := range stale {
		op := []haOp{{"scale", 3}, {"update", 0}}[i]
		staleAnswer[i] = len(a.answers)
		staleWG.Go(func() { c.do(a, op, paused.addr, image, &abort, waitQuiet) })
	}
	poll.Until(t, 2*time.Minute, "another replica leads while the leader is stopped", func() (bool, string) {
		next = c.serving(paused)
		return next != nil, ""
	})
	t.Logf("takeover while the leader is stopped (SIGSTOP): %s (leader TTL %s)", time.Since(stopped).Round(time.Millisecond), haTTL)
	if d := haTTL + time.Second - time.Since(stopped); d > 0 {
		time.Sleep(d) // stopped for longer than the TTL, whatever the takeover took
	}
	pausedProc.Resume(t)
	// Resumed, it finds its term over: it stops, as Marathon does.
	if err := pausedProc.WaitExit(t, time.Minute); err == nil || !strings.Contains(pausedProc.Stderr(), "lost leadership") {
		t.Fatalf("the resumed former leader: exit %v; stderr:\n%s", err, pausedProc.Stderr())
	}
	setQuiet(true)
	closeCalm()
	wg.Wait()
	staleWG.Wait()
	if t.Failed() {
		return
	}
	// What the stopped leader answered once resumed: never a write of its
	// own (no X-Marathon-Via: it acted as leader after its term).
	for i, a := range stale {
		ans := a.answers[staleAnswer[i]]
		t.Logf("%s, written to the stopped leader: %s", a.id, ans)
		if strings.Contains(ans, ": 20") && strings.HasSuffix(ans, `(X-Marathon-Via "")`) {
			t.Errorf("%s: the resumed former leader acknowledged a write itself: %s", a.id, ans)
		}
	}
	apps = append(apps, stale...)
	var starts []string
	for _, r := range c.replicas {
		r.mu.Lock()
		starts = append(starts, fmt.Sprintf("%s started %d times", r.addr, r.starts))
		r.mu.Unlock()
	}
	t.Logf("replicas: %s", strings.Join(starts, ", "))

	// Exactly one leader, named by every replica.
	var leader string
	poll.Until(t, 2*time.Minute, "every replica names one leader", func() (bool, string) {
		var names []string
		for _, r := range c.replicas {
			names = append(names, c.leaderSeenBy(r))
		}
		leader = names[0]
		return leader != "" && names[1] == leader && names[2] == leader, strings.Join(names, " ")
	})
	if l := c.byAddr(leader); l == nil || c.serving(nil) != l {
		t.Fatalf("the named leader %s does not serve as leader", leader)
	}

	// Every acknowledged write is there, and the driver did what one
	// leader acting once per change does: a launch per new task, a stop per
	// task that had to go, never a container started or stopped twice.
	for _, a := range apps {
		s, err := c.readApp(a.id)
		if err != nil || !s.exists || s.instances != a.instances || s.gen != a.gen {
			t.Errorf("%s: %+v (%v), want %d instances at generation %d", a.id, s, err, a.instances, a.gen)
		}
	}
	poll.Until(t, time.Minute, "Docker's events caught up", func() (bool, string) {
		alive, err := runningByApp(dcli, namespace)
		if err != nil {
			return false, err.Error()
		}
		snap := counts.snapshot()
		for _, a := range apps {
			if snap.starts[a.id]-snap.dies[a.id] != len(alive[a.id]) {
				return false, fmt.Sprintf("%s: %d started, %d died, %d running", a.id, snap.starts[a.id], snap.dies[a.id], len(alive[a.id]))
			}
		}
		return true, ""
	})
	alive, err := runningByApp(dcli, namespace)
	if err != nil {
		t.Fatal(err)
	}
	snap := counts.snapshot()
	for _, a := range apps {
		t.Logf("%s: %d launches, %d stops, %d containers created but never started (%d answers lost and read back)",
			a.id, snap.starts[a.id], snap.dies[a.id], snap.creates[a.id]-snap.starts[a.id], a.unknowns)
		if snap.starts[a.id] != a.launches || snap.dies[a.id] != a.kills {
			t.Errorf("%s: the drivers started %d and stopped %d containers; its acknowledged history needs %d and %d",
				a.id, snap.starts[a.id], snap.dies[a.id], a.launches, a.kills)
		}
		s, _ := c.readApp(a.id)
		slices.Sort(s.taskIDs)
		if running := alive[a.id]; len(running) != a.instances || !slices.Equal(running, s.taskIDs) {
			t.Errorf("%s: running containers %v, garrison's tasks %v, want %d", a.id, running, s.taskIDs, a.instances)
		}
	}
	for task, n := range snap.perTask {
		if n.starts > 1 || n.terms > 1 {
			t.Errorf("task %s: started %d times, sent SIGTERM %d times", task, n.starts, n.terms)
		}
	}
	// A launch cut short (its leader stopped between Docker's create and
	// start) leaves a created container: the next leader removes it.
	poll.Until(t, time.Minute, "no container but the running tasks", func() (bool, string) {
		all, err := dcli.ContainerList(t.Context(), container.ListOptions{All: true,
			Filters: filters.NewArgs(filters.Arg("label", docker.LabelNamespace+"="+namespace))})
		if err != nil {
			return false, err.Error()
		}
		var others []string
		for _, ctr := range all {
			if ctr.State != container.StateRunning {
				others = append(others, ctr.Labels[docker.LabelTask]+" "+string(ctr.State))
			}
		}
		return len(others) == 0, strings.Join(others, ", ")
	})
}

// do carries out one write of an app's history: sent (first to addr when
// set, then to the replicas in turn) until it is applied, an answer lost
// on the way read back from the state once nothing can be in flight, then
// waited for until it is carried out. False when the test gives up.
func (c *haCluster) do(a *haApp, op haOp, addr, image string, abort *atomic.Bool, waitQuiet func()) bool {
	t := c.t
	for {
		if abort.Load() {
			return false
		}
		var method, path, body string
		switch op.kind {
		case "create":
			method, path = "POST", "/v2/apps"
			body = fmt.Sprintf(`{"id":%q,"instances":%d,"cpus":0.01,"mem":32,"portDefinitions":[{"port":0}],"env":{"GEN":"0"},
				"container":{"type":"DOCKER","docker":{"image":%q}}}`, a.id, op.n, image)
		case "scale":
			method, path, body = "PUT", "/v2/apps"+a.id, fmt.Sprintf(`{"instances":%d}`, op.n)
		case "update":
			method, path, body = "PUT", "/v2/apps"+a.id, fmt.Sprintf(`{"env":{"GEN":"%d"}}`, a.gen+1)
		}
		res, msg := c.write(addr, method, path, body)
		addr = ""
		a.answers = append(a.answers, msg)
		if res == unknown {
			// Read once nothing can be in flight any more: the replica it
			// went to has been killed, or resumed and fenced out, or it
			// answers again.
			a.unknowns++
			t.Logf("%s: answer lost (%s); reading the outcome", a.id, msg)
			waitQuiet()
			c.settle(a, true)
			s, err := c.readApp(a.id)
			if err != nil {
				t.Errorf("%s: %v", a.id, err)
				return false
			}
			switch op.kind {
			case "create":
				res = map[bool]outcome{true: applied, false: notApplied}[s.exists]
			case "scale":
				res = map[bool]outcome{true: applied, false: notApplied}[s.instances == op.n]
			case "update":
				res = map[bool]outcome{true: applied, false: notApplied}[s.gen == a.gen+1]
			}
		}
		if res == applied {
			a.apply(op)
			c.settle(a, false)
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dockerActions counts, from the engine's own event stream, what the
// drivers of every replica did to the garrison's containers.
type dockerActions struct {
	mu sync.Mutex
	actionCounts
}

type actionCounts struct {
	// Per app: containers created, started (a launch: the task ran) and
	// ended (a stop; the test's tasks end only when stopped).
	creates, starts, dies map[string]int
	perTask               map[string]*taskActions
}

type taskActions struct{ starts, terms int }

func newActionCounts() actionCounts {
	return actionCounts{creates: map[string]int{}, starts: map[string]int{}, dies: map[string]int{}, perTask: map[string]*taskActions{}}
}

func (d *dockerActions) snapshot() actionCounts {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := newActionCounts()
	maps.Copy(out.creates, d.creates)
	maps.Copy(out.starts, d.starts)
	maps.Copy(out.dies, d.dies)
	for k, v := range d.perTask {
		c := *v
		out.perTask[k] = &c
	}
	return out
}

func countDockerActions(t *testing.T, dcli *client.Client, namespace string) *dockerActions {
	d := &dockerActions{actionCounts: newActionCounts()}
	ctx, cancel := context.WithCancel(context.Background())
	msgs, errs := dcli.Events(ctx, dockerevents.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(dockerevents.ContainerEventType)),
		filters.Arg("label", docker.LabelNamespace+"="+namespace))})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if ctx.Err() == nil {
					t.Errorf("Docker event stream: %v", err)
				}
				return
			case m := <-msgs:
				app, task := m.Actor.Attributes[docker.LabelApp], m.Actor.Attributes[docker.LabelTask]
				d.mu.Lock()
				ta := d.perTask[task]
				if ta == nil {
					ta = &taskActions{}
					d.perTask[task] = ta
				}
				switch m.Action {
				case dockerevents.ActionCreate:
					d.creates[app]++
				case dockerevents.ActionStart:
					d.starts[app]++
					ta.starts++
				case dockerevents.ActionDie:
					d.dies[app]++
				case dockerevents.ActionKill:
					if m.Actor.Attributes["signal"] == "15" {
						ta.terms++
					}
				}
				d.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// runningByApp lists the garrison's running containers' task ids per app.
func runningByApp(dcli *client.Client, namespace string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, err := dcli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelNamespace+"="+namespace))})
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, ctr := range list {
		out[ctr.Labels[docker.LabelApp]] = append(out[ctr.Labels[docker.LabelApp]], ctr.Labels[docker.LabelTask])
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out, nil
}

// removeNamespace removes every container of the garrison (the tasks).
func removeNamespace(dcli *client.Client, namespace string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := dcli.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", docker.LabelNamespace+"="+namespace))})
	if err != nil {
		return
	}
	for _, ctr := range list {
		dcli.ContainerRemove(ctx, ctr.ID, container.RemoveOptions{Force: true})
	}
}
