package app

import (
	"encoding/json"
	"fmt"
	"strings"
)

// FieldError is one entry of Marathon's error "details": a JSON-pointer-like
// path (array elements as "(i)", e.g. "/healthChecks(0)/path") and its
// messages.
type FieldError struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

// DecodeError is a body that is not JSON or has wrong JSON types: Marathon's
// 400 {"message":"Invalid JSON","details":...}. When the body does not parse
// at all, Syntax is set and details is a plain string, as Jackson's is.
type DecodeError struct {
	Syntax  string
	Details []FieldError
}

func (e *DecodeError) Error() string {
	if e.Syntax != "" {
		return "Invalid JSON: " + e.Syntax
	}
	return "Invalid JSON: " + summarize(e.Details)
}

// MarshalJSON writes Marathon's 400 body.
func (e *DecodeError) MarshalJSON() ([]byte, error) {
	var details any = e.Details
	if e.Syntax != "" {
		details = e.Syntax
	}
	return json.Marshal(struct {
		Message string `json:"message"`
		Details any    `json:"details"`
	}{"Invalid JSON", details})
}

// ValidationError is Marathon's 422 {"message":"Object is not valid",
// "details":[{path, errors}]}.
type ValidationError struct {
	Details []FieldError
}

func (e *ValidationError) Error() string {
	return "Object is not valid: " + summarize(e.Details)
}

// MarshalJSON writes Marathon's 422 body.
func (e *ValidationError) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Message string       `json:"message"`
		Details []FieldError `json:"details"`
	}{"Object is not valid", e.Details})
}

func summarize(fes []FieldError) string {
	parts := make([]string, 0, len(fes))
	for _, fe := range fes {
		parts = append(parts, fmt.Sprintf("%s: %s", fe.Path, strings.Join(fe.Errors, "; ")))
	}
	return strings.Join(parts, ", ")
}

// errorList gathers FieldErrors, one entry per path in first-seen order, as
// Marathon groups violations by path.
type errorList struct {
	list []FieldError
}

func (l *errorList) add(path, msg string) {
	for i := range l.list {
		if l.list[i].Path == path {
			l.list[i].Errors = append(l.list[i].Errors, msg)
			return
		}
	}
	l.list = append(l.list, FieldError{Path: path, Errors: []string{msg}})
}

func (l *errorList) addf(path, format string, args ...any) {
	l.add(path, fmt.Sprintf(format, args...))
}
