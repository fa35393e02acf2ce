package app

import (
	"encoding/json"
	"slices"
	"time"
)

// Patch is a partial update body (PUT with partialUpdate=true, PATCH): the
// top-level fields it carries replace the current app's wholesale and the
// others are kept, as Marathon's AppUpdate does. So a patch with
// {"container":{"docker":{"image":"x"}}} resets the container's other
// fields to their defaults (d2iq-archive/marathon#4868): that is
// Marathon's behaviour and clients rely on it.
type Patch struct {
	fields map[string]any // the non-null top-level fields
	app    *App           // the same fields, decoded
}

// DecodePatch reads a partial update body. A wrong JSON type is a
// *DecodeError; "version" together with anything but "id" is a
// *ValidationError, because a version means "roll back to it".
func DecodePatch(body []byte) (*Patch, error) {
	m, err := parseObject(body)
	if err != nil {
		return nil, err
	}
	for k, v := range m {
		if v == nil {
			delete(m, k) // go-marathon's "ports":null and "dependencies":null
		}
	}
	// Read-only, and not a field of Marathon's AppUpdate: a GET body sent
	// back must not overwrite it.
	delete(m, "versionInfo")
	a, err := decodeObject(m)
	if err != nil {
		return nil, err
	}
	if a.present.has(fVersion) && a.present&^(fieldSet(0).with(fVersion).with(fID)) != 0 {
		return nil, &ValidationError{Details: []FieldError{{Path: "/",
			Errors: []string{"The 'version' field may only be combined with the 'id' field."}}}}
	}
	return &Patch{fields: m, app: a}, nil
}

// Has says whether the patch carries the top-level field (non-null).
func (p *Patch) Has(field string) bool { return p.app.Has(field) }

// Fields lists the known top-level fields the patch carries, sorted.
func (p *Patch) Fields() []string {
	var out []string
	names := fieldNames()
	for f := range numFields {
		if p.app.present.has(f) {
			out = append(out, names[f])
		}
	}
	slices.Sort(out)
	return out
}

// Rollback returns the version to roll back to when the patch is one
// ({"version": ts}, optionally with "id").
func (p *Patch) Rollback() (time.Time, bool) {
	return p.app.Version, p.app.present.has(fVersion)
}

// Apply returns current with the patch's fields replacing its own. The
// result is decoded, not normalized: run Normalize and Validate on it. A
// legacy field in the patch drops its modern twin from current (and vice
// versa), so {"ports":[8080]} replaces the current portDefinitions.
func (p *Patch) Apply(current *App) (*App, error) {
	base, err := json.Marshal(current)
	if err != nil {
		return nil, err
	}
	m, err := parseObject(base)
	if err != nil {
		return nil, err
	}
	twins := [][2]string{{"ports", "portDefinitions"}, {"uris", "fetch"}}
	for _, t := range twins {
		if p.Has(t[0]) {
			delete(m, t[1])
		}
		if p.Has(t[1]) {
			delete(m, t[0])
		}
	}
	if c := p.app.Container; c != nil && c.Docker != nil && c.Docker.Network != "" && !p.Has("networks") {
		delete(m, "networks") // the legacy network is to decide anew
	}
	for k, v := range p.fields {
		m[k] = v
	}
	return decodeObject(m)
}

// Merge applies a partial update body to current: DecodePatch, then Apply.
func Merge(current *App, patchBody []byte) (*App, error) {
	p, err := DecodePatch(patchBody)
	if err != nil {
		return nil, err
	}
	return p.Apply(current)
}
