package rulefmt

import "github.com/garrisonhq/garrison/internal/fileerr"

// Error is one problem in a rules file, placed by line and column (1-based;
// 0 when unknown) and by path (e.g. "rules[2].up.cpu").
type Error = fileerr.Error

// Errors is every problem found, in file order. Parse returns it (as error)
// whenever it has at least one entry: a file is all valid or not used.
type Errors = fileerr.Errors
