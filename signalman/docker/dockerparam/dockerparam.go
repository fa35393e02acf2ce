// Package dockerparam reads Marathon's container.docker.parameters, which
// Marathon passes to `docker run` as --key=value. garrison creates containers
// through the Docker API, not the docker command, so it maps a documented
// allow-list of keys onto the API's fields and refuses every other key.
// It imports nothing of Docker, so headquarter can validate apps with it.
package dockerparam

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Ulimit is one --ulimit name=soft[:hard].
type Ulimit struct {
	Name       string
	Soft, Hard int64
}

// Options is what the parameters of one container set. Repeatable keys
// (label, env, cap-add, ...) accumulate; the others keep their last value,
// as the docker command does.
type Options struct {
	Labels      map[string]string // --label k=v
	Env         []string          // --env K=V, after the task's environment, so it wins
	CapAdd      []string          // --cap-add
	CapDrop     []string          // --cap-drop
	SecurityOpt []string          // --security-opt
	ExtraHosts  []string          // --add-host host:ip
	DNS         []string          // --dns
	Ulimits     []Ulimit          // --ulimit
	Tmpfs       map[string]string // --tmpfs path[:options]
	Devices     []string          // --device host[:container[:perms]]
	LogDriver   string            // --log-driver
	LogOpts     map[string]string // --log-opt k=v
	ShmSize     int64             // --shm-size, bytes
	MemorySwap  int64             // --memory-swap, bytes (-1: unlimited)
	PidsLimit   *int64            // --pids-limit
	ReadOnly    bool              // --read-only
	Init        *bool             // --init
	WorkDir     string            // --workdir
	StopSignal  string            // --stop-signal
}

// Error is a parameter garrison cannot honour; Field is "key" or "value".
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string { return e.Field + ": " + e.Msg }

// setters maps each allowed key to what it sets. A function, so the package
// holds no mutable tables.
func setters() map[string]func(o *Options, v string) error {
	appendTo := func(f func(o *Options) *[]string) func(o *Options, v string) error {
		return func(o *Options, v string) error {
			if v == "" {
				return fmt.Errorf("must not be empty")
			}
			*f(o) = append(*f(o), v)
			return nil
		}
	}
	return map[string]func(o *Options, v string) error{
		"label": func(o *Options, v string) error {
			k, val, _ := strings.Cut(v, "=")
			if k == "" {
				return fmt.Errorf("want key=value")
			}
			if strings.HasPrefix(k, "garrison.") || k == "MESOS_TASK_ID" {
				return fmt.Errorf("label %s is garrison's own", k)
			}
			if o.Labels == nil {
				o.Labels = map[string]string{}
			}
			o.Labels[k] = val
			return nil
		},
		"env": func(o *Options, v string) error {
			if k, _, _ := strings.Cut(v, "="); k == "" {
				return fmt.Errorf("want NAME=value")
			}
			o.Env = append(o.Env, v)
			return nil
		},
		"cap-add":      appendTo(func(o *Options) *[]string { return &o.CapAdd }),
		"cap-drop":     appendTo(func(o *Options) *[]string { return &o.CapDrop }),
		"security-opt": appendTo(func(o *Options) *[]string { return &o.SecurityOpt }),
		"dns":          appendTo(func(o *Options) *[]string { return &o.DNS }),
		"device":       appendTo(func(o *Options) *[]string { return &o.Devices }),
		"add-host": func(o *Options, v string) error {
			if h, ip, ok := strings.Cut(v, ":"); !ok || h == "" || ip == "" {
				return fmt.Errorf("want host:ip")
			}
			o.ExtraHosts = append(o.ExtraHosts, v)
			return nil
		},
		"ulimit": func(o *Options, v string) error {
			name, limits, ok := strings.Cut(v, "=")
			if !ok || name == "" {
				return fmt.Errorf("want name=soft[:hard]")
			}
			softS, hardS, hasHard := strings.Cut(limits, ":")
			soft, err := strconv.ParseInt(softS, 10, 64)
			if err != nil {
				return fmt.Errorf("soft limit %q is not a number", softS)
			}
			hard := soft
			if hasHard {
				if hard, err = strconv.ParseInt(hardS, 10, 64); err != nil {
					return fmt.Errorf("hard limit %q is not a number", hardS)
				}
			}
			o.Ulimits = append(o.Ulimits, Ulimit{Name: name, Soft: soft, Hard: hard})
			return nil
		},
		"tmpfs": func(o *Options, v string) error {
			path, opts, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(path, "/") {
				return fmt.Errorf("want an absolute path[:options]")
			}
			if o.Tmpfs == nil {
				o.Tmpfs = map[string]string{}
			}
			o.Tmpfs[path] = opts
			return nil
		},
		"log-driver": func(o *Options, v string) error {
			if v == "" {
				return fmt.Errorf("must not be empty")
			}
			o.LogDriver = v
			return nil
		},
		"log-opt": func(o *Options, v string) error {
			k, val, ok := strings.Cut(v, "=")
			if !ok || k == "" {
				return fmt.Errorf("want key=value")
			}
			if o.LogOpts == nil {
				o.LogOpts = map[string]string{}
			}
			o.LogOpts[k] = val
			return nil
		},
		"shm-size": func(o *Options, v string) (err error) {
			o.ShmSize, err = bytesOf(v)
			return err
		},
		"memory-swap": func(o *Options, v string) (err error) {
			if v == "-1" {
				o.MemorySwap = -1
				return nil
			}
			o.MemorySwap, err = bytesOf(v)
			return err
		},
		"pids-limit": func(o *Options, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%q is not a number", v)
			}
			o.PidsLimit = &n
			return nil
		},
		"read-only": func(o *Options, v string) (err error) {
			o.ReadOnly, err = boolOf(v)
			return err
		},
		"init": func(o *Options, v string) error {
			b, err := boolOf(v)
			o.Init = &b
			return err
		},
		"workdir": func(o *Options, v string) error {
			if !strings.HasPrefix(v, "/") {
				return fmt.Errorf("want an absolute path")
			}
			o.WorkDir = v
			return nil
		},
		"stop-signal": func(o *Options, v string) error {
			if v == "" {
				return fmt.Errorf("must not be empty")
			}
			o.StopSignal = v
			return nil
		},
	}
}

// Keys lists the allowed keys, sorted.
func Keys() []string {
	keys := make([]string, 0, 20)
	for k := range setters() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Add applies one parameter. A key may be given with or without its leading
// dashes ("log-driver", "--log-driver"), as Marathon users write both.
func (o *Options) Add(key, value string) error {
	k := strings.TrimLeft(key, "-")
	set, ok := setters()[k]
	if !ok {
		return &Error{Field: "key", Msg: fmt.Sprintf("docker parameter %q is not supported: garrison creates containers through the Docker API, not `docker run`, and maps only %s", key, strings.Join(Keys(), ", "))}
	}
	if err := set(o, value); err != nil {
		return &Error{Field: "value", Msg: fmt.Sprintf("docker parameter %s: %v", k, err)}
	}
	return nil
}

func boolOf(v string) (bool, error) {
	if v == "" {
		return true, nil // `--read-only` alone means true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", v)
	}
	return b, nil
}

// bytesOf reads docker's sizes: a number with an optional b, k, m or g
// suffix (powers of 1024).
func bytesOf(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'b':
			s = s[:n-1]
		case 'k':
			mult, s = 1<<10, s[:n-1]
		case 'm':
			mult, s = 1<<20, s[:n-1]
		case 'g':
			mult, s = 1<<30, s[:n-1]
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (e.g. 64m)", v)
	}
	return n * mult, nil
}
