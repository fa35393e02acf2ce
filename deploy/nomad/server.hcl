# A Nomad server. Run three (10.0.0.31-33 here), each with
#
#   nomad agent -config deploy/nomad/server.hcl
#
# They elect a leader among themselves once all three have joined.
data_dir  = "/var/lib/nomad"
bind_addr = "0.0.0.0"

server {
  enabled          = true
  bootstrap_expect = 3
  server_join {
    retry_join = ["10.0.0.31", "10.0.0.32", "10.0.0.33"]
  }
}
