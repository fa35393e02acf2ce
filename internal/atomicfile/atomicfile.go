// Package atomicfile replaces a file in one rename, so that a reader (or
// garrison after a crash) sees the old content or the new, never half.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data (mode 0600): a temporary file in the same
// directory, renamed over path. durable also syncs the file before the
// rename and the directory after it, so that the new content survives a
// machine crash; without it the rename alone is atomic for a process that
// crashes.
func Write(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
