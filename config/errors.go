package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors; every *Error wraps one of them, so callers can tell the
// kinds apart with errors.Is.
var (
	// ErrSyntax: the file is not valid YAML.
	ErrSyntax = errors.New("invalid YAML")
	// ErrUnknownKey: a key that is not part of the schema (often a typo).
	ErrUnknownKey = errors.New("unknown key")
	// ErrType: a value of the wrong kind, e.g. a list where a number belongs.
	ErrType = errors.New("wrong type")
	// ErrValue: a value of the right kind that is not allowed.
	ErrValue = errors.New("invalid value")
)

// Error is one problem with the configuration, naming where it is. Parse,
// Load, Validate and Apply return one *Error, or several joined with
// errors.Join (one per line of the message).
type Error struct {
	// File is the configuration file, when loaded from one.
	File string
	// Path is the key path, e.g. "upstream.url" or "listeners[1].address";
	// empty for the document as a whole.
	Path string
	// Line is the 1-based line of the key (0 when the value is a default or
	// came from a flag).
	Line int
	// Flag is the command-line flag the value came from, e.g. "--upstream".
	Flag string
	// Msg says what is wrong.
	Msg string
	// Err is the sentinel: ErrSyntax, ErrUnknownKey, ErrType or ErrValue.
	Err error
}

// Error formats the problem as "config: [file: ][line N: ]path: message",
// e.g. "config: line 12: upstream.tls.cafile: unknown key", or as
// "config: --flag: message" for a value that came from a flag.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Line > 0 && e.Flag == "" {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(": ")
	}
	switch {
	case e.Flag != "":
		b.WriteString(e.Flag)
		b.WriteString(": ")
	case e.Path != "":
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// maxErrors caps how many problems one call reports; a last line says how
// many more there are.
const maxErrors = 20

// joinErrors returns nil, the one error, or the first maxErrors of errs
// joined (one line each) and, past maxErrors, a line "config: [file: ]and N
// more problems".
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	shown := errs[:min(len(errs), maxErrors)]
	es := make([]error, len(shown), len(shown)+1)
	for i, e := range shown {
		es[i] = e
	}
	if more := len(errs) - len(shown); more > 0 {
		es = append(es, &Error{File: errs[maxErrors].File, Msg: fmt.Sprintf("and %d more %s", more, plural(more, "problem")), Err: errs[maxErrors].Err})
	}
	return errors.Join(es...)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
