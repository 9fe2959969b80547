package config

import (
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a config file, at the place it was written.
type Error struct {
	File      string
	Line, Col int
	Path      string // e.g. destinations[0].retry.schedule[2]
	Msg       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.File, e.Line, e.Col, e.Path, e.Msg)
}

// Errors is every problem found, sorted by position. Error prints one per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders the errors by line, then column.
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
}

// Errorf makes an error at pos in this config's file.
func (c *Config) Errorf(pos Pos, path, format string, args ...any) *Error {
	return &Error{File: c.File, Line: pos.Line, Col: pos.Col, Path: path, Msg: fmt.Sprintf(format, args...)}
}
