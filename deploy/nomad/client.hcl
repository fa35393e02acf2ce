# A Nomad client: every host that runs garrison's apps, each with
#
#   nomad agent -config deploy/nomad/client.hcl
#
# as root (the docker driver needs it) and a Docker engine.
data_dir  = "/var/lib/nomad"
bind_addr = "0.0.0.0"

client {
  enabled = true
  servers = ["10.0.0.31", "10.0.0.32", "10.0.0.33"]
}

plugin "docker" {
  config {
    # The garrison agent (garrison-agent.nomad.hcl) mounts the Docker socket.
    volumes {
      enabled = true
    }
  }
}

# Apps with a cmd and no container image run under raw_exec.
plugin "raw_exec" {
  config {
    enabled = true
  }
}
