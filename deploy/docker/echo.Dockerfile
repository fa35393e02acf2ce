# The example echo service (examples/echo) as an image FROM scratch, to run
# on Nomad. It must be static:
#
#   CGO_ENABLED=0 go build -o bin/echo ./examples/echo
#   DOCKER_BUILDKIT=0 docker build --network host -f deploy/docker/echo.Dockerfile -t REGISTRY/echo:TAG bin
FROM scratch
COPY echo /echo
ENTRYPOINT ["/echo"]
