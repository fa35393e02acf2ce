# The garrison image: the static binary `make build` leaves in bin/, FROM
# scratch (nothing to pull). deploy/nomad/garrison-agent.nomad.hcl runs it
# as `garrison agent` on every Nomad client. From the repository's root:
#
#   make build
#   DOCKER_BUILDKIT=0 docker build --network host -f deploy/docker/garrison.Dockerfile -t REGISTRY/garrison:TAG bin
FROM scratch
COPY garrison /garrison
ENTRYPOINT ["/garrison"]
