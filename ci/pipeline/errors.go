package pipeline

import "github.com/garrisonhq/garrison/internal/fileerr"

// Error is one problem in a pipeline file.
type Error = fileerr.Error

// Errors is every problem found, in file order.
type Errors = fileerr.Errors
