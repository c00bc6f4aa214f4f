package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// passwordFileMode is the permission of every password file this package writes: the
// hashes are readable by the owner only.
const passwordFileMode = 0o600

// CreatePasswordFile writes a password file at path holding the one user username with
// the bcrypt hash (see [HashPassword]), replacing any file already there, like
// mosquitto_passwd -c. The file is written atomically with mode 0600.
func CreatePasswordFile(path, username, hash string) error {
	if err := checkUserHash(username, hash); err != nil {
		return fmt.Errorf("password file %s: %w", path, err)
	}
	return writeFileAtomic(path, []byte(username+":"+hash+"\n"))
}

// SetUser sets the bcrypt hash of username in the existing password file at path,
// replacing the user's line where it is or appending a new line, and reports whether
// the user was added. Every other line, comments and blank lines included, is kept byte
// for byte. The file must exist and parse (see [LoadPasswords]); it is rewritten
// atomically with mode 0600, keeping its owner where the caller may set it.
func SetUser(path, username, hash string) (added bool, err error) {
	if err := checkUserHash(username, hash); err != nil {
		return false, fmt.Errorf("password file %s: %w", path, err)
	}
	err = editPasswordFile(path, username, func(lines []string, i int) []string {
		newLine := username + ":" + hash
		if i >= 0 {
			lines[i] = newLine + lineEnding(lines[i])
			return lines
		}
		added = true
		if n := len(lines); n > 0 && lineEnding(lines[n-1]) == "" {
			lines[n-1] += "\n"
		}
		return append(lines, newLine+"\n")
	})
	return added, err
}

// DeleteUser removes username's line from the password file at path, keeping every
// other line byte for byte. It returns an error wrapping [ErrUnknownUser] if the user is
// not in the file. The file is rewritten atomically with mode 0600.
func DeleteUser(path, username string) error {
	var unknown bool
	err := editPasswordFile(path, username, func(lines []string, i int) []string {
		if i < 0 {
			unknown = true
			return nil
		}
		return append(lines[:i], lines[i+1:]...)
	})
	if err == nil && unknown {
		return fmt.Errorf("password file %s: %w %q", path, ErrUnknownUser, username)
	}
	return err
}

// checkUserHash validates what is about to be written.
func checkUserHash(username, hash string) error {
	if err := ValidUsername(username); err != nil {
		return err
	}
	if err := checkHash(hash); err != nil {
		return fmt.Errorf("user %q: %w", username, err)
	}
	return nil
}

// editPasswordFile reads and parses the password file at path, calls edit with its
// lines (each with its line ending) and the index of username's line (-1 if absent),
// and writes back what edit returns unless that is nil.
func editPasswordFile(path, username string, edit func(lines []string, i int) []string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read password file: %w", err)
	}
	entries, err := parsePasswords(path, data)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	i := -1
	for _, e := range entries {
		if e.user == username {
			i = e.line - 1
		}
	}
	out := edit(lines, i)
	if out == nil {
		return nil
	}
	return writeFileAtomic(path, []byte(strings.Join(out, "")))
}

// lineEnding returns the "\n" or "\r\n" that line ends with, or "".
func lineEnding(line string) string {
	switch {
	case strings.HasSuffix(line, "\r\n"):
		return "\r\n"
	case strings.HasSuffix(line, "\n"):
		return "\n"
	}
	return ""
}

// writeFileAtomic replaces the file at path (or the file a symbolic link at path points
// to) with data: it writes a temporary file in the same directory with mode 0600, syncs
// it, gives it the owner and group of the file it replaces (when the process may),
// renames it over path and syncs the directory. Readers see the old file or the new
// one, never a mix, and a crash leaves one of the two.
func writeFileAtomic(path string, data []byte) (err error) {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write password file: %w", err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(passwordFileMode); err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	if st, err := os.Stat(path); err == nil {
		// Best effort: only root may give a file away, and a root-run "holdfast
		// passwd" must not leave the service's file unreadable to the service.
		copyOwner(tmp, st)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename is done; a failed directory sync only weakens crash safety
		d.Close()
	}
	return nil
}
