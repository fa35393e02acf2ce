package app

import (
	"bytes"
	"encoding/json"
	"time"
)

// IsUpgrade says whether going from old to new needs the tasks replaced
// (Marathon's AppDefinition.isUpgrade): any change but instances, version
// and versionInfo means a rolling restart; an instances-only change is a
// scale. Apps with different ids are never an upgrade of each other. Both
// should be normalized.
func IsUpgrade(old, new *App) bool {
	if old.ID != new.ID {
		return false
	}
	return !bytes.Equal(configJSON(old), configJSON(new))
}

// IsScale says whether only the instance count differs (Marathon's
// isOnlyScaleChange).
func IsScale(old, new *App) bool {
	return old.ID == new.ID && old.Instances != new.Instances && !IsUpgrade(old, new)
}

// configJSON is the app's JSON without the fields a scale may change.
func configJSON(a *App) []byte {
	w := a.wire()
	w.Instances, w.Version, w.VersionInfo = 0, "", nil
	b, _ := json.Marshal(w) // plain values only: cannot fail
	return b
}

// Bump stamps next with the version for a change made at now and keeps
// versionInfo as Marathon does: lastConfigChangeAt moves on an upgrade (or
// a restart), lastScalingAt on any change. prev is the stored app (nil on
// create).
func Bump(prev, next *App, now time.Time, restart bool) *App {
	out := next.Clone()
	v := NewVersion(now)
	out.Version = v
	vi := VersionInfo{LastScalingAt: v, LastConfigChangeAt: v}
	if prev != nil && prev.VersionInfo != nil && !restart && !IsUpgrade(prev, next) {
		vi.LastConfigChangeAt = prev.VersionInfo.LastConfigChangeAt
	}
	out.VersionInfo = &vi
	return out
}
