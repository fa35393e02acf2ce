// Package citest holds what the pipeline's tests share: the busybox base
// image they run steps in.
package citest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"github.com/garrisonhq/garrison/images"
)

// BusyboxImage is the tag of the step image tests use.
const BusyboxImage = "garrison-test/busybox:ci"

// Busybox builds BusyboxImage (Docker's cache makes a rebuild cheap) and
// returns its tag.
func Busybox(t testing.TB, cli client.APIClient) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log bytes.Buffer
	if err := images.BuildBusybox(ctx, cli, BusyboxImage, &log); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	return BusyboxImage
}
