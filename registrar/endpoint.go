package registrar

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Prefix is the root of the registry in etcd.
const Prefix = "/service/"

// Endpoint is one live instance of a service. Its JSON form is the one etcd's
// naming/endpoints package reads: {"Addr":"127.0.0.1:31005","Metadata":{...}}.
type Endpoint struct {
	Addr     string            `json:"Addr"`
	Metadata map[string]string `json:"Metadata,omitempty"`
}

// Instance is an endpoint together with the key it lives under.
type Instance struct {
	Service  string
	ID       string
	Endpoint Endpoint
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,252})$`)

// ValidateName checks a service name or an instance id: a key segment, so no
// slash, and nothing that would make two services share a prefix.
func ValidateName(kind, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s %q: want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 253 characters", kind, s)
	}
	return nil
}

// ServicePrefix is the etcd prefix that holds every instance of service,
// with the trailing slash so that "web" does not match "web2".
func ServicePrefix(service string) string { return Prefix + service + "/" }

// Key is the etcd key of one instance.
func Key(service, instanceID string) string { return ServicePrefix(service) + instanceID }

// ParseKey splits a registry key into service and instance id.
func ParseKey(key string) (service, instanceID string, ok bool) {
	rest, found := strings.CutPrefix(key, Prefix)
	if !found {
		return "", "", false
	}
	service, instanceID, found = strings.Cut(rest, "/")
	if !found || service == "" || instanceID == "" || strings.Contains(instanceID, "/") {
		return "", "", false
	}
	return service, instanceID, true
}

// DecodeInstance reads a registry key/value pair. Values that are not an
// endpoint are rejected, as etcd's resolver skips them.
func DecodeInstance(key, value []byte) (Instance, error) {
	service, id, ok := ParseKey(string(key))
	if !ok {
		return Instance{}, fmt.Errorf("registry key %q is not %s<service>/<instance>", key, Prefix)
	}
	var ep Endpoint
	if err := json.Unmarshal(value, &ep); err != nil {
		return Instance{}, fmt.Errorf("registry key %q: value is not an endpoint: %w", key, err)
	}
	if ep.Addr == "" {
		return Instance{}, fmt.Errorf("registry key %q: endpoint has no Addr", key)
	}
	return Instance{Service: service, ID: id, Endpoint: ep}, nil
}
