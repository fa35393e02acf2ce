// Package pipeline reads a project's pipeline file, .garrison.yml at the
// root of its repository, and checks it before anything runs: every
// problem is reported at once with its line, column and field path
// (".garrison.yml:7:5: build.commands[1]: must be a string").
//
// The file:
//
//	app: /ktv/account              # required: the app id the product deploys as;
//	                               # the image is named after it (ktv/account)
//	build:                         # required: runs in a fresh container
//	  image: garrison/build:busybox  # required: an image the Docker engine has
//	  commands:                    # required: shell lines, run in order by sh -e;
//	    - go build -o out/account .  # the first that fails fails the run
//	  env: {CGO_ENABLED: "0"}      # optional: added to every command
//	  hostGo: true                 # optional: mounts the host's Go toolchain
//	                               # (/usr/local/go) read-only at /usr/local/go
//	                               # and puts its bin on PATH; default false
//	  timeout: 20m                 # optional: default 30m, at most 2h
//	image:                         # required: the product image
//	  base: scratch                # optional: the runtime base (FROM); default scratch
//	  files:                       # required: what the build left in the workspace
//	    - from: out/account        # a path in the workspace (no ..)
//	      to: /account             # an absolute path in the image
//	  entrypoint: [/account]       # optional
//	  cmd: [--port, "8080"]        # optional
//	  env: {MODE: production}      # optional
//	deploy:                        # optional: the Marathon app definition of the
//	  instances: 2                 # product in every environment (as YAML; garrison
//	  cpus: 0.1                    # sets id and container.docker.image); without it
//	  mem: 64                      # nothing is deployed and no test runs
//	  portDefinitions: [{port: 0}]
//	  healthChecks: [{protocol: HTTP, path: /ping}]
//	tests:                         # optional: run against the run's alpha deployment,
//	                               # with ALPHA_URL (http://host:port), ALPHA_HOST,
//	                               # ALPHA_PORT and ALPHA_APP in their env
//	  - name: smoke                # required, unique: [a-z0-9-]
//	    image: garrison/test:busybox  # optional: without it the step runs on a warm
//	                               # runner of the pool (--ci-runner-pool), in the
//	                               # runner's own environment, the workspace its
//	                               # working directory
//	    commands: [wget -qO- "$ALPHA_URL/ping"]
//	    env: {}
//	    timeout: 5m
//	environments:                  # optional: promotion order; default alpha, qa,
//	                               # production. alpha is each run's own deployment
//	                               # (/alpha/<run>/<app>), destroyed after the tests;
//	                               # production runs as <app>, others as /<env><app>
//	  - alpha                      # a name alone, or:
//	  - name: qa
//	    auto: true                 # promote here on green without a call
//	  - name: production
//	    approval: true             # a user other than the committer must approve
//	notify:                        # optional: who hears when a run ends
//	  - url: http://127.0.0.1:9000/hook  # a URL POSTed the run (signed), or
//	    on: [passed, failed]       # default both; cancelled too when named
//	  - mail: [dev@example.com, "Ops <ops@example.com>"]  # a mail to these
//	    on: [failed]               # (one address or a list), sent through
//	                               # garrison's --smtp-addr server
//
// Every step also gets the run's variables: CI=true, GARRISON_RUN,
// GARRISON_PROJECT, CI_COMMIT_SHA, CI_COMMIT_REF, CI_COMMIT_BRANCH,
// CI_COMMIT_TAG, CI_COMMIT_AUTHOR and CI_WORKSPACE (/workspace, the
// checked-out repository and the working directory), plus the project's
// secrets, which the file never holds.
//
// Limits: the file at most 256 KiB; 100 commands per step, each at most
// 16 KiB; 100 env entries per step; 100 image files; 20 test steps; 8
// environments; 10 notifications, each with at most 20 mail recipients.
package pipeline
