# garrison agent on every Nomad client, as a Nomad system job.
#
# The agent registers the Docker containers of its host that carry the
# garrison.service label in etcd (/service/<name>/<instance>, leased), and
# exports the CPU and memory of garrison's containers for Prometheus. Apps
# that garrison runs through its Nomad driver are Docker containers on these
# hosts; the driver labels them with garrison.port (their first host port),
# so an app labelled garrison.service=<name> is registered here.
#
# Run it (the garrison image is built by deploy/docker/garrison.Dockerfile
# and pushed to a registry every client pulls from):
#
#   nomad job run \
#     -var 'etcd=http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379' \
#     -var 'image=registry.example:5000/garrison:1.0.0' \
#     deploy/nomad/garrison-agent.nomad.hcl
#
# Needs on each client: the docker driver with volumes enabled (the agent
# reads the Docker socket), as deploy/nomad/client.hcl sets:
#
#   plugin "docker" { config { volumes { enabled = true } } }
#
# A system job runs one allocation per eligible client and places one on
# every client that joins; `nomad job stop garrison-agent` removes them all.
# The agent keeps no state: a replaced allocation re-registers what runs.

variable "etcd" {
  type        = string
  description = "comma-separated etcd client URLs of garrison's etcd cluster"
}

variable "image" {
  type        = string
  description = "the garrison image (its entrypoint is the garrison binary)"
  default     = "garrison:latest"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "metrics_port" {
  type        = number
  description = "host port of the agent's /metrics"
  default     = 9108
}

job "garrison-agent" {
  type        = "system"
  datacenters = var.datacenters
  # Above ordinary service jobs: registration must keep up with them.
  priority = 75

  update {
    max_parallel = 1
    stagger      = "10s"
  }

  group "agent" {
    network {
      mode = "host"
      port "metrics" {
        static = var.metrics_port
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "agent" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        args = [
          "agent",
          "--etcd", var.etcd,
          # Registered addresses are this client's; the node name keeps
          # agents' registrations apart.
          "--advertise-host", "${attr.unique.network.ip-address}",
          "--node", "${node.unique.name}",
          "--metrics-addr", "${NOMAD_ADDR_metrics}",
        ]
        volumes = ["/var/run/docker.sock:/var/run/docker.sock"]
      }

      # Time to revoke its registrations' leases on SIGTERM.
      kill_timeout = "15s"

      resources {
        cpu    = 100
        memory = 64
      }

      service {
        name     = "garrison-agent"
        provider = "nomad"
        port     = "metrics"
        check {
          type     = "http"
          path     = "/metrics"
          interval = "10s"
          timeout  = "2s"
        }
      }
    }
  }
}
