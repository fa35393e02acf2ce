// Package nomad is signalman's Nomad driver: it runs a garrison app as one
// Nomad service job and lets Nomad own what a cluster scheduler owns, the
// instance count, placement, rollouts and the replacement of failed
// instances. garrison stays the Marathon API, the registry and the
// autoscaler above it.
//
// Unlike the Docker and process drivers, which start one task at a time,
// this driver works on whole apps:
//
//	Submit(app)            create or update the job (count, spec, rollout)
//	Scale(appID, n, force) Nomad's scale endpoint
//	Stop(appID)            stop the job (kept, stopped, until Nomad's GC)
//	Jobs()                 garrison's jobs, for adoption after a restart
//	Allocations(appID)     the app's allocations as Marathon tasks
//	Watch()                allocation changes from Nomad's event stream
//	KillTask(taskID)       stop one allocation; Nomad replaces it
//	Reschedule(appID)      replace failed allocations Nomad left down
//	Queue, Deployment      what waits for a place; the latest rollout
//	Log(taskID, n)         the end of a task's stdout and stderr
//
// # App to job
//
//   - Job id: the app id's safe form ("/prod/web" -> "prod_web"); the meta
//     garrison_app_id and garrison_version say whose it is and which app
//     version it runs. A job without that meta is never touched.
//   - One group "app" of count = instances, one task "app": the docker
//     driver with network_mode host for an image (cmd through /bin/sh -c
//     as entrypoint, args after the image's entrypoint), raw_exec for a
//     plain cmd (/bin/sh -c) or args (args[0] is the program).
//   - Ports: one host-mode network with a dynamic port p<i> per port
//     definition (reserved ports with requirePorts). The environment is
//     Marathon's, built by signalman/task, with Nomad's interpolations for
//     what only Nomad knows: PORT0..n, PORT, PORTS, PORT_<NAME> and
//     PORT_<servicePort> are ${NOMAD_HOST_PORT_p<i>}, HOST is ${NOMAD_IP_p0}
//     (the address the task is reached at, as on one machine), and
//     MESOS_TASK_ID is ${NOMAD_JOB_ID}.${NOMAD_ALLOC_ID}, the task id.
//   - cpus become MHz at the node fingerprint's cpu.frequency (or a fixed
//     figure, WithCPUMHz), mem becomes MemoryMB (at least 10), disk the
//     group's ephemeral disk; env, user, labels (job meta and Docker
//     labels) and taskKillGracePeriodSeconds (kill_timeout) carry over;
//     privileged and host volumes map to the docker driver's options
//     (which the Nomad client must allow); fetch and docker parameters are
//     refused. Docker tasks with ports get the garrison.port label, so the
//     garrison agent (deploy/nomad) registers those labelled
//     garrison.service, and garrison.instance = the task id, the instance
//     id it registers them under (the local metric source finds an app's
//     instances by it).
//     Nomad interpolates env values and args: a ${NOMAD_...}, ${attr...}
//     or ${meta...} reference is expanded where Marathon would pass it
//     literally; other text, $X included, passes through.
//   - Health checks: HTTP and TCP checks on an app port become Nomad's own
//     checks (provider "nomad") with check_restart limit =
//     maxConsecutiveFailures after the grace period; HTTPS, COMMAND and
//     literal-port checks are left to garrison's monitor (Check.Native).
//   - Failures: no restart in place; Nomad reschedules a failed allocation
//     as a new one (a new task id, as Marathon), exponential delay from
//     max(5 s, backoff) up to maxLaunchDelay.
//   - Rollouts: the update block (see update): max_parallel from
//     minimumHealthCapacity, canaries (auto-promoted) from
//     maximumOverCapacity, health from the checks or the task state,
//     min_healthy_time 0 (Marathon counts a task healthy at its first
//     passing check), auto_revert off.
//   - Constraints: see translateConstraints; one without a Nomad form is a
//     *ConstraintError, which the API answers with a 422 at its path.
//
// # Allocation to task
//
//	alloc pending, no task state     TASK_STAGING
//	task pending (received, pulling) TASK_STARTING
//	task running                     TASK_RUNNING
//	task dead, failed                TASK_FAILED
//	task dead, desired run           TASK_FINISHED
//	desired stop, not yet dead       TASK_KILLING
//	desired stop, dead               TASK_KILLED
//	alloc lost or unknown            TASK_LOST
//
// # Known gaps
//
//   - An allocation that fails around the end of its deployment can be
//     left down by Nomad (seen on 1.9.3: recorded healthy, no follow-up
//     evaluation); Reschedule replaces it (TestRescheduleReplacesFailed).
//   - Scale is refused while a deployment runs (ErrDeploymentActive, or
//     force fails the deployment); min_healthy_time 0 keeps deployments of
//     apps without checks short.
//   - Submit and Scale write with the job's modify index enforced, and with
//     WithGuard check the caller's leadership between the read and the
//     write; Stop, KillTask and Reschedule have no index to enforce in
//     Nomad's API: a leader paused right after its check may still do one.
//   - UNLIKE maps only literal alternatives; CLUSTER without a value and
//     Mesos fault domains (@region, @zone) are refused.
//   - Nomad restarted: Watch re-lists once Nomad answers again. A Nomad
//     that kept its state still holds the allocations (adopted as they
//     are); one that lost it (a -dev agent, lost server data) holds none,
//     and Watch reports the tasks it had sent as live as TASK_LOST; the
//     caller submits its apps again (Jobs lists none).
//   - Watch remembers each allocation Nomad holds (its modify index and
//     version); its re-list every 10 minutes forgets the ones Nomad has
//     garbage-collected, so Nomad's GC bounds what it keeps.
//
// # Plugging it into the scheduler
//
// headquarter/scheduler today plans single tasks and calls a task-level
// Driver (Launch, Kill, List, Watch, Remove). With Nomad, count and rollout
// are Nomad's, so the scheduler should get an app-level path beside the
// task-level one, chosen per garrison (Config.Cluster, an interface the
// scheduler defines with the methods above) rather than per app:
//
//  1. Create/update/scale/delete of an app become Submit/Scale/Stop, done
//     by the leader after the store write, instead of planning launches
//     and kills. Scaling by the autoscaler is Scale; a restart is a Submit
//     with a new version.
//  2. Reconcile compares each stored app with Jobs(): a missing job or one
//     at another version or count is resubmitted (Submit is idempotent: an
//     identical spec moves nothing, which is what adoption after a restart
//     is); a garrison job with no stored app is reported, never stopped
//     automatically. An error from Nomad skips the pass: nothing is
//     deleted because Nomad could not be read.
//  3. The task view (/v2/tasks, app tasks, lastTaskFailure, events) is fed
//     from Watch, which starts with every allocation; backoff and
//     replacement are Nomad's, so the scheduler's own backoff is off for
//     these apps, except that a TASK_FAILED task that stays without
//     Task.Replacing calls Reschedule (Nomad leaves an allocation that
//     failed around the end of its deployment down). /v2/queue and
//     /v2/deployments read Queue and Deployment.
//  4. Health: native checks decide Nomad's deployment health (Task.Healthy);
//     the checks Check.Native refuses run in garrison's monitor over the
//     watched tasks, as today. Registration in etcd is the agent's (the
//     garrison agent runs on every Nomad client as a system job, see
//     deploy/nomad).
//  5. Killing one task is KillTask (Nomad replaces it); kill with scale is
//     a Scale to count-1 (Nomad picks which allocation stops).
package nomad
