package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Every setting is a flag; the same setting can come from the environment
// (GARRISON_<FLAG_NAME>, dashes as underscores) or from a YAML file given by
// --config, whose keys are the flag names. A flag on the command line wins
// over the environment, which wins over the file.

// envName is the environment variable that sets a flag.
func envName(flagName string) string {
	return "GARRISON_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseSettings parses args into fs, then fills every flag not given on the
// command line from the environment and then from the config file.
func parseSettings(fs *flag.FlagSet, args []string) error {
	var configPath string
	if fs.Lookup("config") == nil {
		fs.StringVar(&configPath, "config", "", "YAML file of settings (keys are flag names); env "+envName("config"))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
			given[f.Name] = true
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	path := fs.Lookup("config").Value.String()
	if path == "" {
		return nil
	}
	return applyConfigFile(fs, path, given)
}

// applyConfigFile sets flags from a YAML mapping; every error names the file,
// the line and the key.
func applyConfigFile(fs *flag.FlagSet, path string, given map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config file %s:%d: want a mapping of setting: value", path, root.Line)
	}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		f := fs.Lookup(key.Value)
		if f == nil || key.Value == "config" {
			errs = append(errs, fmt.Errorf("config file %s:%d: unknown setting %q", path, key.Line, key.Value))
			continue
		}
		if given[key.Value] {
			continue
		}
		var value string
		switch val.Kind {
		case yaml.ScalarNode:
			value = val.Value
		case yaml.SequenceNode:
			items := make([]string, 0, len(val.Content))
			for _, item := range val.Content {
				if item.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("config file %s:%d: %s: list items must be plain values", path, item.Line, key.Value))
				}
				items = append(items, item.Value)
			}
			value = strings.Join(items, ",")
		default:
			errs = append(errs, fmt.Errorf("config file %s:%d: %s: want a value or a list", path, val.Line, key.Value))
			continue
		}
		if err := fs.Set(key.Value, value); err != nil {
			errs = append(errs, fmt.Errorf("config file %s:%d: %s: %w", path, val.Line, key.Value, err))
		}
	}
	return errors.Join(errs...)
}

// splitList turns "a,b, c" into [a b c], dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// byteSize is a flag of a number of bytes: 1073741824, 512MiB, 2GiB, 64MB.
type byteSize uint64

func (b *byteSize) String() string { return strconv.FormatUint(uint64(*b), 10) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, mult := strings.TrimSpace(s), uint64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > math.MaxUint64/mult {
		return fmt.Errorf("%q: want a number of bytes, e.g. 268435456, 256MiB or 2GiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}
