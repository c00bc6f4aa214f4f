package auth

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// Exit codes of [RunPasswd].
const (
	ExitOK      = 0 // the file was written
	ExitFailure = 1 // the file could not be read, parsed or written, or the password was refused
	ExitUsage   = 2 // the command line was wrong
)

const passwdUsage = `usage: holdfast passwd [-c] [-D] FILE USER
       holdfast passwd [-c] -b FILE USER PASSWORD

Manage a password file of holdfast's local broker (the format of mosquitto_passwd,
with bcrypt hashes).

  -c  create FILE with USER as its only user, replacing FILE if it exists
  -D  delete USER from FILE
  -b  batch mode: take PASSWORD from the command line (it shows in the
      process list and shell history)

Without -b the password is read twice from the terminal without echo (or as two
lines from standard input when that is not a terminal). Without -c, FILE must
exist; its other lines are kept. FILE is rewritten atomically with mode 0600.

Exit status: 0 done, 1 failure, 2 usage error.
`

// RunPasswd implements "holdfast passwd [-c] [-D] [-b] FILE USER [PASSWORD]", used like
// mosquitto_passwd: -c creates (or replaces) FILE with USER in it, -D deletes USER, -b
// takes the password from the command line; otherwise the password is prompted for
// twice on the terminal without echo, or read as two lines from stdin when stdin is not
// a terminal. args are the arguments after "passwd". Passwords are hashed at
// [DefaultHashCost]. It returns [ExitOK], [ExitFailure] (with the error on stderr) or
// [ExitUsage] (with the usage text on stderr).
func RunPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runPasswd(args, stdin, stdout, stderr, DefaultHashCost)
}

// runPasswd is RunPasswd hashing at cost.
func runPasswd(args []string, stdin io.Reader, stdout, stderr io.Writer, cost int) int {
	fset := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	create := fset.Bool("c", false, "")
	del := fset.Bool("D", false, "")
	batch := fset.Bool("b", false, "")
	usage := func(msg string) int {
		if msg != "" {
			fmt.Fprintf(stderr, "holdfast passwd: %s\n", msg)
		}
		fmt.Fprint(stderr, passwdUsage)
		return ExitUsage
	}
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, passwdUsage)
			return ExitOK
		}
		return usage(err.Error())
	}
	rest := fset.Args()
	want := 2
	if *batch {
		want = 3
	}
	switch {
	case *del && *create:
		return usage("-c and -D cannot be used together")
	case *del && *batch:
		return usage("-b and -D cannot be used together")
	case len(rest) != want:
		return usage(fmt.Sprintf("want %d arguments after the options, got %d", want, len(rest)))
	}
	path, user := rest[0], rest[1]
	fail := func(err error) int {
		fmt.Fprintf(stderr, "holdfast passwd: %v\n", err)
		return ExitFailure
	}
	if err := ValidUsername(user); err != nil {
		return fail(err)
	}
	if *del {
		if err := DeleteUser(path, user); err != nil {
			return fail(err)
		}
		return ExitOK
	}
	var password string
	if *batch {
		password = rest[2]
	} else {
		var err error
		if password, err = readPasswordTwice(stdin, stdout); err != nil {
			return fail(err)
		}
	}
	hash, err := HashPassword(password, cost)
	if err != nil {
		return fail(err)
	}
	if *create {
		err = CreatePasswordFile(path, user, hash)
	} else {
		_, err = SetUser(path, user, hash)
	}
	if err != nil {
		return fail(err)
	}
	return ExitOK
}

// readPasswordTwice prompts on w for a password and its confirmation. From a terminal
// it reads without echo; from anything else it reads two lines.
func readPasswordTwice(r io.Reader, w io.Writer) (string, error) {
	var read func() (string, error)
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read = func() (string, error) {
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(w)
			return string(b), err
		}
	} else {
		br := bufio.NewReader(r)
		read = func() (string, error) {
			line, err := br.ReadString('\n')
			if err == io.EOF && line != "" {
				err = nil
			}
			return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), err
		}
	}
	fmt.Fprint(w, "Password: ")
	first, err := read()
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(w, "Reenter password: ")
	second, err := read()
	if err != nil {
		return "", fmt.Errorf("read password again: %w", err)
	}
	if first != second {
		return "", fmt.Errorf("%w: the two passwords differ", ErrInvalidPassword)
	}
	return first, nil
}
